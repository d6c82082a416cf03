/* exec in place (issue 8, item 2): connect, let the broker see us, then exec an approved shell
 * that writes a request on the inherited socket (fd 3) and prints the answer.
 * Usage: exec_in_place SOCKET APPROVED_SH REQUEST */
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

int main(int argc, char **argv) {
    if (argc != 4) return 2;
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    strncpy(a.sun_path, argv[1], sizeof a.sun_path - 1);
    if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) { perror("connect"); return 3; }
    if (s != 3) { dup2(s, 3); close(s); }
    usleep(300000); /* the broker has accepted and looked at us by now */
    char script[70000];
    snprintf(script, sizeof script, "printf '%%s\\n' '%s' >&3; head -n 1 <&3", argv[3]);
    execl(argv[2], "sh", "-c", script, (char *)NULL);
    perror("exec");
    return 3;
}
