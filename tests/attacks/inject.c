/* A preload library (issue 8, item 3): harmless here, it only has to be loaded. */
__attribute__((constructor)) static void injected(void) {}
