#include <uv.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

/// Linux's `struct mmsghdr` (a msghdr and the length received into it), declared here because
/// the C library declares it only under _GNU_SOURCE, which Swift's Glibc module does not set.
struct iotaf_mmsghdr {
    struct msghdr msg_hdr;
    unsigned int msg_len;
};

/// recvmmsg(2): up to `vlen` datagrams in one system call; -1 with errno set on failure.
static inline int iotaf_recvmmsg(int fd, struct iotaf_mmsghdr *msgs, unsigned int vlen, int flags) {
    return (int)syscall(SYS_recvmmsg, fd, msgs, vlen, flags, (void *)0);
}

// UDP segmentation offload (Linux 4.18+) and receive coalescing (5.0+): see UDPSocket.swift.
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <netinet/in.h>

enum {
    IOTAF_SOL_UDP = 17,       // SOL_UDP (= IPPROTO_UDP)
    IOTAF_UDP_SEGMENT = 103,  // linux/udp.h: per-send segment size (cmsg) / socket default
    IOTAF_UDP_GRO = 104,      // linux/udp.h: receive coalesced segments, segment size in a cmsg
    /// Control space for one UDP_GRO cmsg (an int), with room to spare.
    IOTAF_GRO_CONTROL_SPACE = 64,
};

/// Whether the kernel knows UDP_SEGMENT on this socket (reading the option changes nothing).
static inline int iotaf_udp_gso_supported(int fd) {
    int value = 0;
    socklen_t length = sizeof value;
    return getsockopt(fd, IOTAF_SOL_UDP, IOTAF_UDP_SEGMENT, &value, &length) == 0;
}

/// Asks the kernel to deliver coalesced segments (one read, UDP_GRO cmsg); 1 when it agreed.
static inline int iotaf_udp_enable_gro(int fd) {
    int on = 1;
    return setsockopt(fd, IOTAF_SOL_UDP, IOTAF_UDP_GRO, &on, sizeof on) == 0;
}

/// One sendmsg of `length` bytes that the kernel cuts into datagrams of `segment` bytes (the last
/// may be shorter), all to `to`. Returns the bytes sent, or -errno.
static inline long iotaf_udp_send_segments(int fd, const void *bytes, size_t length,
                                           const struct sockaddr_in6 *to, uint16_t segment) {
    struct iovec vector = { (void *)bytes, length };
    union { char space[CMSG_SPACE(sizeof(uint16_t))]; struct cmsghdr align; } control;
    memset(&control, 0, sizeof control);
    struct msghdr message;
    memset(&message, 0, sizeof message);
    message.msg_name = (void *)to;
    message.msg_namelen = sizeof *to;
    message.msg_iov = &vector;
    message.msg_iovlen = 1;
    message.msg_control = control.space;
    message.msg_controllen = sizeof control.space;
    struct cmsghdr *c = CMSG_FIRSTHDR(&message);
    c->cmsg_level = IOTAF_SOL_UDP;
    c->cmsg_type = IOTAF_UDP_SEGMENT;
    c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    memcpy(CMSG_DATA(c), &segment, sizeof segment);
    long sent;
    do { sent = (long)sendmsg(fd, &message, MSG_DONTWAIT); } while (sent < 0 && errno == EINTR);
    return sent < 0 ? -(long)errno : sent;
}

/// The segment size of a coalesced read (its UDP_GRO cmsg), 0 when the read is one datagram.
static inline int iotaf_udp_gro_segment(struct msghdr *message) {
    for (struct cmsghdr *c = CMSG_FIRSTHDR(message); c != NULL; c = CMSG_NXTHDR(message, c)) {
        if (c->cmsg_level == IOTAF_SOL_UDP && c->cmsg_type == IOTAF_UDP_GRO) {
            int segment = 0;
            memcpy(&segment, CMSG_DATA(c), sizeof segment);
            return segment;
        }
    }
    return 0;
}

/// setns(2) into the network namespace open on `fd`, for the calling thread only (CLONE_NEWNET):
/// tests open sockets inside a namespace they made (with a qdisc of their own) and come back.
/// 0, or -1 with errno set. Declared here because the C library's setns needs _GNU_SOURCE.
static inline int iotaf_enter_network_namespace(int fd) {
    return (int)syscall(SYS_setns, fd, 0x40000000 /* CLONE_NEWNET */);
}

/// sendmmsg(2) of up to 8 segmented sends (UDP_SEGMENT), each `lengths[i]` bytes at `buffers[i]`
/// cut by the kernel into datagrams of `segment` bytes, all to `to`: the batched send path of the
/// channel benchmark's baseline. Returns the messages sent, or -errno.
static inline int iotaf_udp_send_segment_batch(int fd, void *const *buffers, const size_t *lengths, int count,
                                               const struct sockaddr_in6 *to, uint16_t segment) {
    enum { limit = 8 };
    struct iotaf_mmsghdr messages[limit];
    struct iovec vectors[limit];
    union { char space[CMSG_SPACE(sizeof(uint16_t))]; struct cmsghdr align; } controls[limit];
    if (count > limit) count = limit;
    memset(messages, 0, sizeof messages);
    memset(controls, 0, sizeof controls);
    for (int i = 0; i < count; i++) {
        vectors[i].iov_base = buffers[i];
        vectors[i].iov_len = lengths[i];
        struct msghdr *m = &messages[i].msg_hdr;
        m->msg_name = (void *)to;
        m->msg_namelen = sizeof *to;
        m->msg_iov = &vectors[i];
        m->msg_iovlen = 1;
        m->msg_control = controls[i].space;
        m->msg_controllen = sizeof controls[i].space;
        struct cmsghdr *c = CMSG_FIRSTHDR(m);
        c->cmsg_level = IOTAF_SOL_UDP;
        c->cmsg_type = IOTAF_UDP_SEGMENT;
        c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        memcpy(CMSG_DATA(c), &segment, sizeof segment);
    }
    int sent;
    do { sent = (int)syscall(SYS_sendmmsg, fd, messages, (unsigned int)count, 0); } while (sent < 0 && errno == EINTR);
    return sent < 0 ? -errno : sent;
}
