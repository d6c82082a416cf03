/* The checked floor of the broker benchmarks: floor_server plus the kernel work that the broker's
 * per-request checks cannot do without, and nothing else. It shows what part of the broker's
 * distance from the floor is the price of the checks themselves (the system calls every request
 * must make) and what part is the broker's own code.
 *
 * Per connection: SO_PEERCRED, then the connecting process as the broker learns it the first time
 * (a pidfd, /proc/<pid> opened and its `exe` stat'ed, its `environ` and `status` opened, every
 * ancestor's `stat` and `cmdline` read and `exe` stat'ed: the caller chain, hashes taken as
 * cached), or, like the broker, a process already seen and still alive (its pidfd polled) taken
 * from memory after the per-request checks.
 * Per chunk read: recvmsg with the writer's credentials and pidfd (SO_PASSCRED, SO_PASSPIDFD;
 * the pidfd closed), then the writer's `exe` stat'ed against connect time, one byte of its
 * `environ` read (empty once it executed), its `status` read for TracerPid, one audit record of
 * RECORD_BYTES appended to LOG with one write(2), and the answer sent. What it leaves out: JSON
 * parsing, policy, the store, the record's HMAC and serialisation (user-space work).
 *
 * usage: checked_floor_server SOCKET_PATH LOG_PATH RECORD_BYTES   (runs until killed) */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef SO_PASSPIDFD
#define SO_PASSPIDFD 76
#endif
#ifndef SCM_PIDFD
#define SCM_PIDFD 0x04
#endif

#define MAX_CONN 1024
static const char ANSWER[] =
    "{\"type\":\"RESPONSE\",\"status\":\"success\",\"results\":[{\"target\":\"k\","
    "\"value\":\"v\",\"attributes\":{}}]}\n";
static const char REFUSED[] = "{\"type\":\"RESPONSE\",\"status\":\"denied\"}\n";

/* What connect time learnt of a connecting process (remembered across its connections). */
struct conn {
    int pid, pidfd, dir, environ, status;
    dev_t dev;
    ino_t ino;
};

static int parent_of(int pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t r = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (r <= 0) return 0;
    buf[r] = 0;
    char *p = strrchr(buf, ')');
    int ppid = 0;
    if (p && sscanf(p + 2, "%*c %d", &ppid) != 1) return 0;
    return ppid;
}

/* Processes seen, by slot: a connection points at one. */
#define MAX_PROCS 64
static struct conn procs[MAX_PROCS];
static int next_proc;

static int exited(int pidfd) {
    struct pollfd p = {.fd = pidfd, .events = POLLIN};
    return poll(&p, 1, 0) != 0;
}

static void drop(struct conn *k) {
    int fds[] = {k->pidfd, k->dir, k->environ, k->status};
    for (unsigned i = 0; i < sizeof fds / sizeof fds[0]; i++)
        if (fds[i] >= 0) close(fds[i]);
    memset(k, 0xff, sizeof *k);
}

static int learn(struct ucred cr, struct conn *k);

/* The process at the other end of `c`, remembered (alive: the request's checks follow) or
 * learnt; NULL when it cannot be pinned. */
static struct conn *identify(int c) {
    struct ucred cr;
    socklen_t len = sizeof cr;
    if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0) return NULL;
    for (int i = 0; i < MAX_PROCS; i++)
        if (procs[i].pid == cr.pid && procs[i].pidfd >= 0 && !exited(procs[i].pidfd))
            return &procs[i];
    struct conn *k = &procs[next_proc];
    next_proc = (next_proc + 1) % MAX_PROCS;
    drop(k);
    return learn(cr, k) ? k : NULL;
}

/* Learns a process never seen: 0 when it cannot be pinned. */
static int learn(struct ucred cr, struct conn *k) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d", cr.pid);
    k->pid = cr.pid;
    k->pidfd = (int)syscall(SYS_pidfd_open, cr.pid, 0);
    k->dir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (k->pidfd < 0 || k->dir < 0) return 0;
    struct stat st;
    if (fstatat(k->dir, "exe", &st, 0) != 0) return 0;
    k->dev = st.st_dev;
    k->ino = st.st_ino;
    k->environ = openat(k->dir, "environ", O_RDONLY | O_CLOEXEC);
    k->status = openat(k->dir, "status", O_RDONLY | O_CLOEXEC);
    if (k->environ < 0 || k->status < 0) return 0;
    for (int p = parent_of(cr.pid); p > 1; p = parent_of(p)) {
        /* An ancestor's executable may be unreadable: it is still part of the chain. */
        snprintf(path, sizeof path, "/proc/%d/exe", p);
        stat(path, &st);
        snprintf(path, sizeof path, "/proc/%d/cmdline", p);
        char argv[4096];
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            if (read(fd, argv, sizeof argv) < 0) argv[0] = 0;
            close(fd);
        }
    }
    return 1;
}

/* The per-request checks: 1 when the writer `pid` is the identified process, unchanged and
 * untraced. */
static int still_holds(struct conn *k, int pid) {
    if (pid != k->pid) return 0;
    struct stat st;
    if (fstatat(k->dir, "exe", &st, 0) != 0 || st.st_dev != k->dev || st.st_ino != k->ino)
        return 0;
    char buf[4096];
    if (pread(k->environ, buf, 1, 0) != 1) return 0;
    ssize_t r = pread(k->status, buf, sizeof buf - 1, 0);
    if (r <= 0) return 0;
    buf[r] = 0;
    char *t = strstr(buf, "TracerPid:\t");
    return t && t[11] == '0';
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s SOCKET_PATH LOG_PATH RECORD_BYTES\n", argv[0]);
        return 2;
    }
    size_t record_len = (size_t)atol(argv[3]);
    if (record_len < 2) record_len = 2;
    char *record = malloc(record_len);
    int log = open(argv[2], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (!record || log < 0) {
        perror("checked_floor_server: log");
        return 1;
    }
    memset(record, 'r', record_len - 1);
    record[record_len - 1] = '\n';
    int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strncpy(a.sun_path, argv[1], sizeof a.sun_path - 1);
    unlink(argv[1]);
    int on = 1;
    if (ls < 0 || setsockopt(ls, SOL_SOCKET, SO_PASSCRED, &on, sizeof on) != 0 ||
        bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, 1024) != 0) {
        perror("checked_floor_server: bind");
        return 1;
    }
    setsockopt(ls, SOL_SOCKET, SO_PASSPIDFD, &on, sizeof on); /* Linux 6.5 and later */
    static struct pollfd fds[MAX_CONN + 1];
    static struct conn *conns[MAX_CONN + 1];
    memset(procs, 0xff, sizeof procs);
    int n = 1;
    fds[0].fd = ls;
    fds[0].events = POLLIN;
    char buf[65536];
    union {
        char space[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(sizeof(int)) +
                   CMSG_SPACE(253 * sizeof(int))];
        struct cmsghdr align;
    } control;
    for (;;) {
        if (poll(fds, n, -1) < 0) {
            if (errno == EINTR) continue;
            perror("checked_floor_server: poll");
            return 1;
        }
        for (int i = n - 1; i >= 1; i--) {
            if (!fds[i].revents) continue;
            struct iovec iov = {.iov_base = buf, .iov_len = sizeof buf};
            struct msghdr m = {.msg_iov = &iov,
                               .msg_iovlen = 1,
                               .msg_control = control.space,
                               .msg_controllen = sizeof control.space};
            ssize_t r = recvmsg(fds[i].fd, &m, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
            if (r <= 0) {
                if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
                close(fds[i].fd);
                fds[i] = fds[--n];
                conns[i] = conns[n];
                continue;
            }
            int writer = 0;
            for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
                if (c->cmsg_level != SOL_SOCKET) continue;
                if (c->cmsg_type == SCM_CREDENTIALS)
                    writer = ((struct ucred *)CMSG_DATA(c))->pid;
                else if (c->cmsg_type == SCM_PIDFD || c->cmsg_type == SCM_RIGHTS) {
                    int *fd = (int *)CMSG_DATA(c);
                    for (size_t f = 0; f < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); f++)
                        if (fd[f] >= 0) close(fd[f]);
                }
            }
            int ok = conns[i] && still_holds(conns[i], writer);
            for (ssize_t k = 0; k < r; k++) {
                if (buf[k] != '\n') continue;
                if (ok && write(log, record, record_len) != (ssize_t)record_len) ok = 0;
                const char *ans = ok ? ANSWER : REFUSED;
                size_t len = ok ? sizeof ANSWER - 1 : sizeof REFUSED - 1;
                if (send(fds[i].fd, ans, len, MSG_NOSIGNAL) < 0) break;
            }
        }
        if (fds[0].revents & POLLIN) {
            int c;
            while (n <= MAX_CONN &&
                   (c = accept4(ls, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0) {
                fds[n].fd = c;
                fds[n].events = POLLIN;
                fds[n].revents = 0;
                conns[n] = identify(c);
                n++;
            }
        }
    }
}
