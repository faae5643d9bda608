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
