/* Holds N connections to the broker open until killed (issue 8, item 11).
 * Usage: holder SOCKET N; prints "held K" once connected. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    int n = atoi(argv[2]), held = 0;
    for (int i = 0; i < n; i++) {
        int s = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un a = { .sun_family = AF_UNIX };
        strncpy(a.sun_path, argv[1], sizeof a.sun_path - 1);
        if (connect(s, (struct sockaddr *)&a, sizeof a) == 0) held++;
    }
    printf("held %d\n", held);
    fflush(stdout);
    pause();
    return 0;
}
