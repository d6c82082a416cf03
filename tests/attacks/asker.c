/* One caller of a flood of distinct unknown callers (issue 18, item 4): each copy is built
 * with its own -DNONCE, so each has its own hash. Sends $REQ on $KEYCHAIN_AUTH_SOCKET and
 * prints the one-line answer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

#ifndef NONCE
#define NONCE 0
#endif
static volatile int nonce = NONCE;

int main(void) {
    const char *path = getenv("KEYCHAIN_AUTH_SOCKET"), *req = getenv("REQ");
    if (!path || !req) return 2;
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    strncpy(a.sun_path, path, sizeof a.sun_path - 1);
    if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) return 3;
    if (write(s, req, strlen(req)) < 0 || write(s, "\n", 1) != 1) return 4;
    char buf[65536];
    ssize_t n, got = 0;
    while (got < (ssize_t)sizeof buf - 1 && (n = read(s, buf + got, sizeof buf - 1 - got)) > 0) {
        got += n;
        if (memchr(buf, '\n', got)) break;
    }
    buf[got] = 0;
    fputs(buf, stdout);
    return nonce < 0;
}
