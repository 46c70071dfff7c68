#ifndef EPP_CLINUX_SHIM_H
#define EPP_CLINUX_SHIM_H
/* Linux APIs Swift's Glibc module lacks: epoll, timerfd, eventfd, accept4, inotify, signalfd. */
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/uio.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <errno.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/un.h>
/* glibc hides accept4 without _GNU_SOURCE. */
extern int accept4(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags);
static inline int shim_errno(void) { return errno; }
static inline void shim_set_errno(int e) { errno = e; }
#endif
