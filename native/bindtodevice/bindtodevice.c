/*
 * Socket options Node's dgram lacks (Linux), called with a bound socket's fd:
 *  - bindToDevice(fd, dev): SO_BINDTODEVICE. Node cannot bind a UDP socket to an interface nor
 *    tell on which interface a datagram arrived; on a multi-homed host a DHCP server must answer
 *    on one link only.
 *  - forceRecvBuffer(fd, bytes): SO_RCVBUFFORCE, which (with CAP_NET_ADMIN) is not capped by
 *    net.core.rmem_max (212992 bytes by default). A thousand machines powering on send a
 *    thousand DHCPDISCOVERs and TFTP RRQs within milliseconds; each waits in the listening
 *    socket's buffer at ~1-2 KiB of kernel memory, so the default buffer drops most of them
 *    and each drop costs its machine a 1-4 s retransmission. Returns the size the kernel
 *    reports afterwards (SO_RCVBUF, which counts its bookkeeping: twice the request).
 * N-API, plain C: builds with node-gyp (binding.gyp) or a single gcc line.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <net/if.h>
#include <node_api.h>

static napi_value throw_errno(napi_env env, const char *what, int err) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_throw_error(env, err == EPERM ? "EPERM" : NULL, msg);
  return NULL;
}

/* Both calls take (fd, value): the arguments, with a thrown TypeError (and 0) when missing. */
static int fd_and_value(napi_env env, napi_callback_info info, const char *usage, int32_t *fd, napi_value *value) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2) {
    napi_throw_type_error(env, NULL, usage);
    return 0;
  }
  if (napi_get_value_int32(env, argv[0], fd) != napi_ok || *fd < 0) {
    napi_throw_type_error(env, NULL, "fd must be a non-negative integer");
    return 0;
  }
  *value = argv[1];
  return 1;
}

static napi_value bind_to_device(napi_env env, napi_callback_info info) {
  int32_t fd;
  napi_value arg;
  if (!fd_and_value(env, info, "bindToDevice(fd, device) needs two arguments", &fd, &arg)) return NULL;
  char dev[IFNAMSIZ];
  size_t len = 0;
  if (napi_get_value_string_utf8(env, arg, dev, sizeof dev, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "device must be a string");
    return NULL;
  }
  if (len == 0 || len >= IFNAMSIZ - 1) {
    napi_throw_range_error(env, NULL, "device name must be 1-15 characters");
    return NULL;
  }
  if (setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, dev, (socklen_t)(len + 1)) != 0)
    return throw_errno(env, "setsockopt(SO_BINDTODEVICE)", errno);
  return NULL;
}

static napi_value force_recv_buffer(napi_env env, napi_callback_info info) {
  int32_t fd, bytes;
  napi_value arg;
  if (!fd_and_value(env, info, "forceRecvBuffer(fd, bytes) needs two arguments", &fd, &arg)) return NULL;
  if (napi_get_value_int32(env, arg, &bytes) != napi_ok || bytes <= 0 || bytes > (1 << 30)) {
    napi_throw_range_error(env, NULL, "bytes must be between 1 and 1 GiB");
    return NULL;
  }
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes) != 0)
    return throw_errno(env, "setsockopt(SO_RCVBUFFORCE)", errno);
  int got = 0;
  socklen_t len = sizeof got;
  if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &got, &len) != 0) return throw_errno(env, "getsockopt(SO_RCVBUF)", errno);
  napi_value out;
  napi_create_int32(env, got, &out);
  return out;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "bindToDevice", NAPI_AUTO_LENGTH, bind_to_device, NULL, &fn);
  napi_set_named_property(env, exports, "bindToDevice", fn);
  napi_create_function(env, "forceRecvBuffer", NAPI_AUTO_LENGTH, force_recv_buffer, NULL, &fn);
  napi_set_named_property(env, exports, "forceRecvBuffer", fn);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
