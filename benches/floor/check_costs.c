/* What each system call of the broker's per-request checks costs by itself, against a null
 * system call: the price floor of "every check of the second release still on". It starts a
 * child that sleeps, opens its /proc entries as the broker does, and times N calls of each:
 *   fstatat(<proc dir>, "exe")   the writer still runs the executable it was identified with
 *   pread(environ, 1 byte)       its address space is the one it was identified with (no exec)
 *   pread(status)                TracerPid: no tracer attached (the kernel formats the file)
 *   write(log, RECORD_BYTES)     one audit record appended (O_APPEND, page cache)
 *
 * usage: cc -O2 -o check_costs benches/floor/check_costs.c && taskset -c 0 ./check_costs [LOG_DIR]
 * prints one JSON object of microseconds per call. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define N 200000
#define RECORD_BYTES 1600

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    pid_t child = fork();
    if (child == 0) {
        pause();
        _exit(0);
    }
    char path[4096];
    snprintf(path, sizeof path, "/proc/%d", child);
    int d = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int env = openat(d, "environ", O_RDONLY | O_CLOEXEC);
    int st = openat(d, "status", O_RDONLY | O_CLOEXEC);
    snprintf(path, sizeof path, "%s/check_costs.log", dir);
    int log = open(path, O_WRONLY | O_CREAT | O_APPEND | O_TRUNC | O_CLOEXEC, 0600);
    if (d < 0 || env < 0 || st < 0 || log < 0) {
        perror("check_costs");
        kill(child, SIGKILL);
        return 1;
    }
    static char buf[4096], rec[RECORD_BYTES];
    memset(rec, 'r', sizeof rec - 1);
    rec[sizeof rec - 1] = '\n';
    struct stat s;
    double t, exe, environ, status, write_, null;
    t = now_ns();
    for (int i = 0; i < N; i++) fstatat(d, "exe", &s, 0);
    exe = (now_ns() - t) / N / 1000;
    t = now_ns();
    for (int i = 0; i < N; i++)
        if (pread(env, buf, 1, 0) != 1) return 1;
    environ = (now_ns() - t) / N / 1000;
    t = now_ns();
    for (int i = 0; i < N; i++)
        if (pread(st, buf, sizeof buf, 0) <= 0) return 1;
    status = (now_ns() - t) / N / 1000;
    t = now_ns();
    for (int i = 0; i < N; i++)
        if (write(log, rec, sizeof rec) != (ssize_t)sizeof rec) return 1;
    write_ = (now_ns() - t) / N / 1000;
    t = now_ns();
    for (int i = 0; i < N; i++) getppid();
    null = (now_ns() - t) / N / 1000;
    printf("{\"exe_fstatat_us\":%.2f,\"environ_pread_us\":%.2f,\"status_pread_us\":%.2f,"
           "\"log_write_%d_us\":%.2f,\"null_syscall_us\":%.2f,\"sum_us\":%.2f}\n",
           exe, environ, status, RECORD_BYTES, write_, null, exe + environ + status + write_);
    unlink(path);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    return 0;
}
