/* Workload for scripts/bench.py: N getppid() system calls, timed.
 *
 *   bench_getppid N [RESULT_FILE|-] [hold] [rate=R] [batch=B] [call=getpid]
 *
 * Makes N calls of syscall(SYS_getppid) (the raw system call: libc cannot
 * cache it) as fast as it can (with rate=R: R calls per second, in batches
 * of B calls, 256 by default, separated by sleeps; with call=getpid: getpid() instead, a
 * system call that the benchmark's programs do not trace) and reports, on
 * one line,
 *
 *   pid=P calls=N start_ns=S loop_start_ns=L loop_end_ns=E ns_per_call=X
 *
 * where the times are CLOCK_MONOTONIC nanoseconds (the clock behind Python's
 * time.monotonic() on Linux): S when main() started, L..E the loop.  The line
 * goes to RESULT_FILE (written to RESULT_FILE.tmp, then renamed, so a reader
 * that sees the file sees all of it) or, without one or with "-", to stdout.
 *
 * With "hold" it then waits for a signal (SIGINT, SIGTERM, SIGKILL...), so a
 * tracer started with -c stays up until the benchmark stops it; an alarm
 * ends it after 120 s whatever happens.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
    long long start = now_ns();
    if (argc < 2) {
        fprintf(stderr, "usage: %s N [RESULT_FILE|-] [hold] [rate=R] [batch=B] [call=getpid]\n",
                argv[0]);
        return 2;
    }
    long n = strtol(argv[1], NULL, 10);
    const char *result = argc > 2 ? argv[2] : "-";
    int hold = 0;
    double rate = 0;
    long batch = 256;
    long nr = SYS_getppid;
    for (int i = 3; i < argc; i++) {
        if (strcmp(argv[i], "hold") == 0)
            hold = 1;
        else if (strncmp(argv[i], "rate=", 5) == 0)
            rate = strtod(argv[i] + 5, NULL);
        else if (strncmp(argv[i], "batch=", 6) == 0)
            batch = strtol(argv[i] + 6, NULL, 10) > 0 ? strtol(argv[i] + 6, NULL, 10) : 1;
        else if (strcmp(argv[i], "call=getpid") == 0)
            nr = SYS_getpid;
    }

    long long t0 = now_ns();
    if (rate > 0) {
        for (long i = 0; i < n;) {
            long long due = t0 + (long long)(i / rate * 1e9);
            struct timespec ts = { due / 1000000000LL, due % 1000000000LL };
            while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0)
                ;
            for (long j = 0; j < batch && i < n; j++, i++)
                syscall(nr);
        }
    } else {
        for (long i = 0; i < n; i++)
            syscall(nr);
    }
    long long t1 = now_ns();

    char line[256];
    snprintf(line, sizeof line,
             "pid=%d calls=%ld start_ns=%lld loop_start_ns=%lld loop_end_ns=%lld ns_per_call=%.2f\n",
             (int)getpid(), n, start, t0, t1, n > 0 ? (double)(t1 - t0) / n : 0.0);
    if (strcmp(result, "-") == 0) {
        fputs(line, stdout);
        fflush(stdout);
    } else {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", result);
        FILE *f = fopen(tmp, "w");
        if (!f || fputs(line, f) < 0 || fclose(f) != 0 || rename(tmp, result) != 0) {
            perror(result);
            return 1;
        }
    }
    if (hold) {
        alarm(120);
        for (;;)
            pause();
    }
    return 0;
}
