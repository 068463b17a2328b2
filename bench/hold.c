/* hold.c — opens N concurrent streaming requests and holds them open.
 *
 *   hold HOST PORT N HOLD_SECONDS BODY [BEARER]
 *
 * Connects N sockets (non-blocking), sends one streaming chat request on each, and
 * polls until every one has seen its response headers and a first "data:" event (or
 * 30 s pass). Then prints "READY open=.. headers=.. data=.." (flushed: the caller
 * samples the server's memory now), keeps reading for HOLD_SECONDS, and exits, which
 * closes every stream. Needs `ulimit -n` above N. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct stream {
  int fd;          /* -1 once closed */
  size_t sent;     /* request bytes written */
  int headers;     /* saw the status line */
  int data;        /* saw a "data:" line */
  char tail[8];    /* last bytes read, to find "data:" across reads */
} stream;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: %s HOST PORT N HOLD_SECONDS BODY [BEARER]\n", argv[0]);
    return 2;
  }
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
  inet_pton(AF_INET, argv[1], &sa.sin_addr);
  int n = atoi(argv[3]);
  double hold = atof(argv[4]);
  const char *body = argv[5];
  char auth[512] = "";
  if (argc > 6) snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", argv[6]);
  char req[8192];
  int len = snprintf(req, sizeof req,
                     "POST /v1/chat/completions HTTP/1.1\r\nHost: %s:%s\r\n%s"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                     argv[1], argv[2], auth, strlen(body), body);

  stream *s = calloc((size_t)n, sizeof *s);
  struct pollfd *pf = calloc((size_t)n, sizeof *pf);
  for (int i = 0; i < n; i++) {
    s[i].fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (s[i].fd < 0) {
      perror("socket (raise ulimit -n)");
      return 1;
    }
    if (connect(s[i].fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
      perror("connect");
      close(s[i].fd);
      s[i].fd = -1;
    }
  }

  double start = now_s(), ready_at = 0;
  int ready = 0;
  char buf[16384];
  for (;;) {
    int open = 0, hdr = 0, dat = 0;
    for (int i = 0; i < n; i++) {
      pf[i].fd = s[i].fd;
      pf[i].events = POLLIN | (s[i].sent < (size_t)len ? POLLOUT : 0);
      pf[i].revents = 0;
      if (s[i].fd >= 0) open++;
      hdr += s[i].headers;
      dat += s[i].data;
    }
    double t = now_s();
    if (!ready && (dat == n || t - start > 30)) {
      printf("READY open=%d headers=%d data=%d after_s=%.2f\n", open, hdr, dat, t - start);
      fflush(stdout);
      ready = 1;
      ready_at = t;
    }
    if (ready && t - ready_at >= hold) {
      printf("DONE open=%d\n", open);
      return 0;
    }
    if (poll(pf, (nfds_t)n, 100) < 0 && errno != EINTR) return 1;
    for (int i = 0; i < n; i++) {
      stream *x = &s[i];
      if (x->fd < 0 || !pf[i].revents) continue;
      if ((pf[i].revents & POLLOUT) && x->sent < (size_t)len) {
        ssize_t w = write(x->fd, req + x->sent, (size_t)len - x->sent);
        if (w > 0) x->sent += (size_t)w;
      }
      if (pf[i].revents & (POLLIN | POLLHUP | POLLERR)) {
        ssize_t r = read(x->fd, buf, sizeof buf - 1);
        if (r <= 0) {
          if (r < 0 && errno == EAGAIN) continue;
          close(x->fd);
          x->fd = -1;
          continue;
        }
        buf[r] = 0;
        if (!x->headers && !strncmp(buf, "HTTP/1.1 200", 12)) x->headers = 1;
        char joined[sizeof x->tail + 32];
        snprintf(joined, sizeof joined, "%.7s%.31s", x->tail, buf);
        if (strstr(buf, "data:") || strstr(joined, "data:")) x->data = 1;
        size_t tl = (size_t)r < sizeof x->tail - 1 ? (size_t)r : sizeof x->tail - 1;
        memcpy(x->tail, buf + r - tl, tl);
        x->tail[tl] = 0;
      }
    }
  }
}
