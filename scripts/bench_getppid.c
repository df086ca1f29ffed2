/* Workload for scripts/bench.py: N getppid() system calls, timed.
 *
 *   bench_getppid N [RESULT_FILE] [hold]
 *
 * Makes N calls of syscall(SYS_getppid) (the raw system call: libc cannot
 * cache it) as fast as it can and reports, on one line,
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
        fprintf(stderr, "usage: %s N [RESULT_FILE|-] [hold]\n", argv[0]);
        return 2;
    }
    long n = strtol(argv[1], NULL, 10);
    const char *result = argc > 2 ? argv[2] : "-";
    int hold = argc > 3 && strcmp(argv[3], "hold") == 0;

    long long t0 = now_ns();
    for (long i = 0; i < n; i++)
        syscall(SYS_getppid);
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
