/* feed_tls.h — mutual TLS on the control ↔ worker feeds (snapshots, telemetry).
 *
 * Snapshots carry decrypted provider secrets, so a feed that leaves the host must be
 * `tls+tcp://` with both ends holding a certificate signed by the operator's CA: the
 * control (listener) requires a client certificate, the worker (dialer) verifies the
 * control's certificate against the CA with the URL's host as the expected name.
 *
 * One process-wide setting, like log_init: feed_tls_init once at start (reads and checks
 * the PEM files), then feed_tls_listener / feed_tls_dialer on every endpoint before it
 * starts. Without feed_tls_init, tls+tcp:// endpoints are refused. */
#ifndef LLMESH_FEED_TLS_H
#define LLMESH_FEED_TLS_H

#include <nng/nng.h>
#include <stddef.h>

#define FEED_TLS_ERR_MAX 512      /* bytes: room for an error message naming a file */
#define FEED_TLS_CLOSE_GRACE_MS 100 /* ms a TLS sender waits before nng_close, see below */

/* Reads cert, key and CA (PEM files), checks they parse and that the key matches the
 * certificate. Returns 0, or -1 with a message naming the file in err. */
int feed_tls_init(const char *cert_file, const char *key_file, const char *ca_file, char *err, size_t cap);

/* Forgets the loaded PEM (endpoints keep their own copies). */
void feed_tls_fini(void);

/* 1 after a successful feed_tls_init. */
int feed_tls_enabled(void);

/* 1 when url is tls+tcp:// (also tls+tcp4/tls+tcp6). */
int feed_tls_url_is_tls(const char *url);

/* 1 when url stays on this host: ipc://, inproc://, or a tcp host in 127.0.0.0/8, ::1,
 * localhost. */
int feed_tls_url_is_local(const char *url);

/* Checks url against the TLS setting: with TLS every feed URL must be tls+tcp://, and a
 * tls+tcp:// URL needs TLS. Returns 0, or -1 with a message in err. */
int feed_tls_check_url(const char *url, char *err, size_t cap);

/* Before nng_listener_start: server certificate, client certificate REQUIRED.
 * No-op (0) for a URL that is not tls+tcp. Returns 0 or an NNG error. */
int feed_tls_listener(nng_listener l, const char *url);

/* Before nng_dialer_start: client certificate, server verified against the CA as the
 * URL's host. No-op (0) for a URL that is not tls+tcp. Returns 0 or an NNG error. */
int feed_tls_dialer(nng_dialer d, const char *url);

/* Call between a last send and nng_close on a socket dialled to url: NNG 1.5.2 can
 * deadlock in nng_close when a TLS pipe is still writing (seen in 5 of 8 worker exits),
 * so a tls+tcp:// sender gives its last message FEED_TLS_CLOSE_GRACE_MS to leave. Only
 * at shutdown; a no-op for other URLs. */
void feed_tls_before_close(const char *url);

#endif
