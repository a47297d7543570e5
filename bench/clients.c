// Clients for the bench, as fast as the kernel allows, one thread each: every
// thread loops connect, write REQUEST, then (`read`) read to EOF or (`noread`)
// close without reading, for SECONDS. Prints the number of completed loops.
// Usage: clients SOCKET THREADS SECONDS read|noread REQUEST
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static struct sockaddr_un addr;
static const char *request;
static int reading;
static double until;
static atomic_long done;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *loop(void *unused) {
  (void)unused;
  char buffer[4096];
  size_t length = strlen(request);
  while (now() < until) {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0) continue;
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0 && write(fd, request, length) == (ssize_t)length) {
      if (reading) {
        ssize_t n;
        while ((n = read(fd, buffer, sizeof buffer)) > 0) {}
        if (n == 0) atomic_fetch_add(&done, 1);
      } else {
        atomic_fetch_add(&done, 1);
      }
    }
    close(fd);
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "Usage: clients SOCKET THREADS SECONDS read|noread REQUEST\n");
    return 64;
  }
  addr.sun_family = AF_UNIX;
  strncpy(addr.sun_path, argv[1], sizeof addr.sun_path - 1);
  int threads = atoi(argv[2]);
  until = now() + atof(argv[3]);
  reading = strcmp(argv[4], "read") == 0;
  request = argv[5];
  pthread_t *ids = calloc(threads, sizeof *ids);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 64 * 1024);
  int started = 0;
  for (; started < threads; started++) {
    if (pthread_create(&ids[started], &attr, loop, NULL) != 0) break;
  }
  for (int i = 0; i < started; i++) pthread_join(ids[i], NULL);
  printf("%ld\n", atomic_load(&done));
  return 0;
}
