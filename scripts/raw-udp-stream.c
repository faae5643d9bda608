// The raw baseline's stream of `bench channel` (1232-byte datagrams over ::1, at most 256 in flight,
// 4 MiB buffers, one thread, no crypto, no libuv), once with one system call per datagram and once
// with UDP GSO/GRO: what segmentation offload does to the physical ceiling (Docs/benchmarks.md).
// Build and run: cc -O2 -o /tmp/raw-udp-stream scripts/raw-udp-stream.c && /tmp/raw-udp-stream 0 && /tmp/raw-udp-stream 1
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
int main(int argc, char **argv) {
    int gso = argc > 1 && atoi(argv[1]);
    const int D = 1232, total = (64 << 20) / D + 1, window = 256, per = 53;
    int a = socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK, 0), b = socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in6 sa = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
    bind(a, (void *)&sa, sizeof sa); bind(b, (void *)&sa, sizeof sa);
    socklen_t l = sizeof sa; getsockname(b, (void *)&sa, &l);
    int sz = 4 << 20, on = 1;
    for (int *s = (int[]){a, b}, i = 0; i < 2; i++) { setsockopt(s[i], SOL_SOCKET, SO_RCVBUF, &sz, 4); setsockopt(s[i], SOL_SOCKET, SO_SNDBUF, &sz, 4); }
    if (gso) setsockopt(b, 17, 104, &on, 4);
    static char out[65536], in[65536];
    memset(out, 7, sizeof out);
    long sent = 0, received = 0, bytes = 0;
    double t0 = now();
    while (received < total) {
        while (sent - received < window && sent < total) {
            int n = gso ? per : 1;
            if (n > total - sent) n = total - sent;
            if (n > window - (sent - received)) n = window - (sent - received);
            struct iovec v = { out, (size_t)n * D };
            union { char c[CMSG_SPACE(2)]; struct cmsghdr h; } ctl; memset(&ctl, 0, sizeof ctl);
            struct msghdr m = { .msg_name = &sa, .msg_namelen = sizeof sa, .msg_iov = &v, .msg_iovlen = 1 };
            if (gso && n > 1) {
                m.msg_control = ctl.c; m.msg_controllen = sizeof ctl.c;
                struct cmsghdr *c = CMSG_FIRSTHDR(&m); c->cmsg_level = 17; c->cmsg_type = 103; c->cmsg_len = CMSG_LEN(2);
                uint16_t seg = D; memcpy(CMSG_DATA(c), &seg, 2);
            }
            if (sendmsg(a, &m, 0) < 0) break;
            sent += n;
        }
        char ctl[64];
        struct iovec v = { in, sizeof in };
        struct msghdr m = { .msg_iov = &v, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl };
        ssize_t r = recvmsg(b, &m, 0);
        if (r < 0) { if (errno == EAGAIN) continue; perror("recv"); return 1; }
        bytes += r; received += (r + D - 1) / D;
    }
    double t = now() - t0;
    printf("%s: %.1f MB/s\n", gso ? "gso+gro" : "one per syscall", bytes / t / 1e6);
    return 0;
}
