/* ttfe.c — time to first SSE event, over N sequential streaming requests.
 *
 *   ttfe HOST PORT N BODY [BEARER]
 *
 * Per request: connect (not timed), then time from writing the request to reading the
 * first "data:" line; the rest of the response is read to EOF (Connection: close).
 * The first 10% of requests (at least 5) are warm-up and not counted. Prints one line:
 *   n=N p50_us=... p90_us=... p99_us=... mean_us=... errors=E
 * Plain blocking sockets so the measurement is not dominated by the client. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* One request; returns µs to the first "data:" or -1. */
static double one(const struct sockaddr_in *sa, const char *req, size_t req_len) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  int one_ = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one_, sizeof one_);
  struct timeval tv = {.tv_sec = 10};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (connect(fd, (const struct sockaddr *)sa, sizeof *sa) < 0) {
    close(fd);
    return -1;
  }
  double t0 = now_us(), t = -1;
  if (write(fd, req, req_len) != (ssize_t)req_len) {
    close(fd);
    return -1;
  }
  char buf[65536];
  size_t have = 0;
  for (;;) {
    ssize_t n = read(fd, buf + have, sizeof buf - 1 - have);
    if (n <= 0) break;
    if (t < 0) {
      have += (size_t)n;
      buf[have] = 0;
      if (strstr(buf, "\ndata:") || strstr(buf, "\rdata:")) t = now_us() - t0;
      else if (have > sizeof buf / 2) { /* keep the tail for a split "data:" */
        memmove(buf, buf + have - 16, 16);
        have = 16;
      }
    }
  }
  close(fd);
  return t;
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: %s HOST PORT N BODY [BEARER]\n", argv[0]);
    return 2;
  }
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
  if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1) {
    fprintf(stderr, "bad host %s\n", argv[1]);
    return 2;
  }
  int n = atoi(argv[3]);
  const char *body = argv[4];
  char auth[512] = "";
  if (argc > 5) snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", argv[5]);
  char req[8192];
  int len = snprintf(req, sizeof req,
                     "POST /v1/chat/completions HTTP/1.1\r\nHost: %s:%s\r\n%s"
                     "Content-Type: application/json\r\nAccept: text/event-stream\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     argv[1], argv[2], auth, strlen(body), body);
  if (len <= 0 || len >= (int)sizeof req) return 2;

  int warm = n / 10 < 5 ? 5 : n / 10, errors = 0, k = 0;
  double *v = calloc((size_t)n, sizeof *v), sum = 0;
  for (int i = 0; i < warm + n; i++) {
    double t = one(&sa, req, (size_t)len);
    if (i < warm) continue;
    if (t < 0) { errors++; continue; }
    v[k++] = t;
    sum += t;
  }
  if (k == 0) {
    printf("n=0 errors=%d\n", errors);
    return 1;
  }
  qsort(v, (size_t)k, sizeof *v, cmp_double);
  printf("n=%d p50_us=%.1f p90_us=%.1f p99_us=%.1f mean_us=%.1f errors=%d\n", k, v[k / 2],
         v[(k * 9) / 10], v[(k * 99) / 100], sum / k, errors);
  free(v);
  return 0;
}
