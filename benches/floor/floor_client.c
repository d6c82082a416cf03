/* The client side of the broker benchmarks: sends one request line and reads one response line,
 * N times, either on one persistent connection or on a new connection each time (connect, write,
 * read, close), and prints the latency of each round's median and 99th percentile and the rate as
 * one JSON line. The same binary is run against the broker and against the floor server, so the
 * two sides differ only in the server. A response without "status":"success" counts as an error.
 *
 * usage: floor_client SOCKET_PATH reconnect|persistent N REQUEST_LINE */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int connect_to(const char *path) {
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strncpy(a.sun_path, path, sizeof a.sun_path - 1);
    if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof a) != 0) {
        perror("floor_client: connect");
        exit(1);
    }
    return s;
}

/* Writes the request, reads up to the newline; 1 when the answer says success. */
static int round_trip(int s, const char *req, size_t len) {
    static char buf[65536];
    if (write(s, req, len) != (ssize_t)len) return 0;
    size_t got = 0;
    for (;;) {
        ssize_t r = read(s, buf + got, sizeof buf - 1 - got);
        if (r <= 0) return 0;
        got += r;
        if (memchr(buf + got - r, '\n', r) || got == sizeof buf - 1) break;
    }
    buf[got] = 0;
    return strstr(buf, "\"status\":\"success\"") != NULL;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s SOCKET reconnect|persistent N REQUEST_LINE\n", argv[0]);
        return 2;
    }
    const char *path = argv[1];
    int reconnect = strcmp(argv[2], "reconnect") == 0;
    long n = atol(argv[3]);
    size_t len = strlen(argv[4]);
    char *req = malloc(len + 2);
    memcpy(req, argv[4], len);
    req[len++] = '\n';
    double *lat = malloc(sizeof(double) * (n > 0 ? n : 1));
    long errors = 0;
    int s = reconnect ? -1 : connect_to(path);
    double start = now_ns();
    for (long i = 0; i < n; i++) {
        double t0 = now_ns();
        if (reconnect) s = connect_to(path);
        if (!round_trip(s, req, len)) errors++;
        if (reconnect) close(s);
        lat[i] = now_ns() - t0;
    }
    double elapsed = (now_ns() - start) / 1e9;
    qsort(lat, n, sizeof(double), cmp);
    printf("{\"rounds\":%ld,\"errors\":%ld,\"p50_us\":%.2f,\"p99_us\":%.2f,\"per_second\":%.0f}\n",
           n, errors, n ? lat[n / 2] / 1e3 : 0, n ? lat[(long)((n - 1) * 0.99)] / 1e3 : 0,
           elapsed > 0 ? n / elapsed : 0);
    return errors ? 3 : 0;
}
