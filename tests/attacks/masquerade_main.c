/* The executable part of the masquerade: everything happens in masquerade_lib.c. */
int masq_run(const char *, const char *, const char *);
int main(int argc, char **argv) { if (argc != 4) return 2; return masq_run(argv[1], argv[2], argv[3]); }
