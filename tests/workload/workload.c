/*
 * workload: a tiny program for the golden tests that makes an exact, known
 * number of system calls.  Built statically by tests/conftest.py so that the
 * dynamic loader adds no openat()/read() calls of its own.
 *
 * Usage: workload CMD [ARGS] [CMD [ARGS]] ...
 *
 *   getppid N        N getppid() calls (raw syscall, so libc cannot cache)
 *   openat PATH N    N openat(AT_FDCWD, PATH, O_RDONLY), each closed if it
 *                    succeeded
 *   write N          N write()s of 1 byte to fd 100 (a dup of /dev/null)
 *   sleep MS         one nanosleep of MS milliseconds
 *   add N            N calls of the noinline add(i, 10) for i = 0..N-1 (for uprobes;
 *                    add returns i + 10)
 *   greet WORD       one call of the noinline greet(WORD) (a string argument)
 *   cdata N          N calls of the noinline inspect(&rec) on a struct record (nested
 *                    structs, bitfields, a union, a 2-D array, a 3-node list); call k
 *                    has rec.nested.inner == k
 *   poke N           maps a page at 0x10000000 (for watchpoints) and writes the u32
 *                    there N times (values 1..N)
 *   exec PROG ARG..  execve(PROG, [PROG, ARG..]) with stdout and stderr sent
 *                    to /dev/null; consumes the rest of the command line
 *
 * Commands run in order, so `workload getppid 2 write 3` makes 2 getppid
 * calls, then 3 writes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define WRITE_FD 100

static long number(const char *s)
{
    char *end;
    long v = strtol(s, &end, 0);
    if (*s == '\0' || *end != '\0' || v < 0) {
        fprintf(stderr, "workload: bad number '%s'\n", s);
        exit(2);
    }
    return v;
}

static void need(int argc, int i, int n, const char *cmd)
{
    if (i + n >= argc) {
        fprintf(stderr, "workload: %s needs %d argument(s)\n", cmd, n);
        exit(2);
    }
}

/* uprobe targets: kept out of line, and their calls kept */
__attribute__((noinline)) int add(int a, int b)
{
    __asm__ volatile("");
    return a + b;
}

__attribute__((noinline)) long greet(const char *word)
{
    __asm__ volatile("");
    return (long)strlen(word);
}

/* C data for the in-script declarations of the golden cases (cdata_*) */
struct point { short x, y; };
union value { long l; unsigned char bytes[8]; struct point p; };
struct node { int id; struct node *next; };
struct record {
    char name[8];
    unsigned int flags : 3, level : 5;
    int delta : 4;
    struct point corners[2];
    int grid[2][3];
    union value v;
    struct { int inner; struct point at; } nested;
    struct node *list;
};

/* noipa: the caller may not assume what inspect() reads */
__attribute__((noipa)) long inspect(struct record *r)
{
    __asm__ volatile("" ::: "memory");
    return r->nested.inner;
}

/* globals of a static (non-PIE) binary: their addresses are the same every run */
struct node nodes[3] = { { 10, &nodes[1] }, { 20, &nodes[2] }, { 30, 0 } };
struct record rec = { "rec", 5, 17, -3, { { 1, -2 }, { 3, 4 } }, { { 0, 1, 2 }, { 10, 11, 12 } },
                      { .l = 0x0102030405060708L }, { 0, { 7, -8 } }, nodes };

static void cdata(long n)
{
    for (long k = 0; k < n; k++) {
        rec.nested.inner = (int)k;
        inspect(&rec);
    }
}

int main(int argc, char **argv)
{
    int i = 1;
    if (argc < 2) {
        fprintf(stderr, "usage: workload CMD [ARGS] ...\n");
        return 2;
    }
    while (i < argc) {
        const char *cmd = argv[i];
        if (strcmp(cmd, "getppid") == 0) {
            need(argc, i, 1, cmd);
            long n = number(argv[i + 1]);
            for (long k = 0; k < n; k++)
                syscall(SYS_getppid);
            i += 2;
        } else if (strcmp(cmd, "openat") == 0) {
            need(argc, i, 2, cmd);
            const char *path = argv[i + 1];
            long n = number(argv[i + 2]);
            for (long k = 0; k < n; k++) {
                long fd = syscall(SYS_openat, AT_FDCWD, path, O_RDONLY);
                if (fd >= 0)
                    syscall(SYS_close, fd);
            }
            i += 3;
        } else if (strcmp(cmd, "write") == 0) {
            need(argc, i, 1, cmd);
            long n = number(argv[i + 1]);
            int fd = open("/dev/null", O_WRONLY);
            if (fd < 0 || dup2(fd, WRITE_FD) < 0) {
                perror("workload: /dev/null");
                return 1;
            }
            close(fd);
            for (long k = 0; k < n; k++)
                syscall(SYS_write, WRITE_FD, "x", 1);
            close(WRITE_FD);
            i += 2;
        } else if (strcmp(cmd, "sleep") == 0) {
            need(argc, i, 1, cmd);
            long ms = number(argv[i + 1]);
            struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
            while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
                ;
            i += 2;
        } else if (strcmp(cmd, "add") == 0) {
            need(argc, i, 1, cmd);
            long n = number(argv[i + 1]);
            volatile long total = 0;
            for (long k = 0; k < n; k++)
                total += add((int)k, 10);
            i += 2;
        } else if (strcmp(cmd, "greet") == 0) {
            need(argc, i, 1, cmd);
            volatile long len = greet(argv[i + 1]);
            (void)len;
            i += 2;
        } else if (strcmp(cmd, "cdata") == 0) {
            need(argc, i, 1, cmd);
            cdata(number(argv[i + 1]));
            i += 2;
        } else if (strcmp(cmd, "poke") == 0) {
            need(argc, i, 1, cmd);
            long n = number(argv[i + 1]);
            volatile unsigned int *p = mmap((void *)0x10000000, 4096, PROT_READ | PROT_WRITE,
                                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
                                            -1, 0);
            if (p == MAP_FAILED) {
                perror("workload: mmap 0x10000000");
                return 1;
            }
            for (long k = 1; k <= n; k++)
                *p = (unsigned int)k;
            i += 2;
        } else if (strcmp(cmd, "exec") == 0) {
            need(argc, i, 1, cmd);
            int fd = open("/dev/null", O_WRONLY);
            if (fd >= 0) {
                dup2(fd, 1);
                dup2(fd, 2);
                if (fd > 2)
                    close(fd);
            }
            execv(argv[i + 1], &argv[i + 1]);
            return 127;
        } else {
            fprintf(stderr, "workload: unknown command '%s'\n", cmd);
            return 2;
        }
    }
    return 0;
}
