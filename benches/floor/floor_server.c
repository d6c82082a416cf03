/* The floor of the broker benchmarks: the fastest trivially correct server for the broker's
 * protocol. One thread, one poll(2) loop, no thread or task per connection: it accepts on a Unix
 * socket and answers every newline-terminated line with the same fixed response the broker
 * gives for the benchmark's read. It checks nothing, so whatever the broker costs beyond this
 * is the price of identity, policy, the store and the audit log.
 *
 * usage: floor_server SOCKET_PATH   (runs until killed) */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_CONN 1024
static const char ANSWER[] =
    "{\"type\":\"RESPONSE\",\"status\":\"success\",\"results\":[{\"target\":\"k\","
    "\"value\":\"v\",\"attributes\":{}}]}\n";

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s SOCKET_PATH\n", argv[0]);
        return 2;
    }
    int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strncpy(a.sun_path, argv[1], sizeof a.sun_path - 1);
    unlink(argv[1]);
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, 1024) != 0) {
        perror("floor_server: bind");
        return 1;
    }
    static struct pollfd fds[MAX_CONN + 1];
    int n = 1;
    fds[0].fd = ls;
    fds[0].events = POLLIN;
    char buf[65536];
    for (;;) {
        if (poll(fds, n, -1) < 0) {
            if (errno == EINTR) continue;
            perror("floor_server: poll");
            return 1;
        }
        for (int i = n - 1; i >= 1; i--) {
            if (!fds[i].revents) continue;
            ssize_t r = read(fds[i].fd, buf, sizeof buf);
            if (r <= 0) {
                if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
                close(fds[i].fd);
                fds[i] = fds[--n];
                continue;
            }
            for (ssize_t k = 0; k < r; k++)
                if (buf[k] == '\n' && write(fds[i].fd, ANSWER, sizeof ANSWER - 1) < 0) break;
        }
        if (fds[0].revents & POLLIN) {
            int c;
            while (n <= MAX_CONN && (c = accept4(ls, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0) {
                fds[n].fd = c;
                fds[n].events = POLLIN;
                fds[n].revents = 0;
                n++;
            }
        }
    }
}
