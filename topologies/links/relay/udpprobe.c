/* factorysat UDP one-way-delay probe (fast twin of topologies/links/udpprobe.py, same CLI).
 *
 *   udpprobe send DST PORT PPS COUNT SIZE [DURATION_S]
 *       PPS > 0: paced; every packet carries (seq u32, CLOCK_REALTIME ns u64, big-endian) taken
 *       just before its own sendto(); when the sleep granularity is coarser than the gap, packets
 *       leave in small bursts, each with its true send time. PPS = 0: as fast as possible
 *       (sendmmsg batches of 64 sharing one timestamp). Prints "sent N elapsed_s E errors X".
 *   udpprobe recv PORT IDLE_S OUT [FIRST_S]
 *       Writes a NumPy .npy int64 array (N, 3): seq, t_send_ns, t_recv_ns (kernel timestamp),
 *       in arrival order. Exits after IDLE_S of silence (FIRST_S before the first packet) or SIGTERM.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int64_t clk(clockid_t c) { struct timespec t; clock_gettime(c, &t); return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec; }
static void put_hdr(unsigned char *b, uint32_t seq, int64_t t) {
    uint32_t s = htonl(seq); memcpy(b, &s, 4);
    for (int i = 0; i < 8; i++) b[4 + i] = (unsigned char)((uint64_t)t >> (56 - 8 * i));
}

static int do_send(int argc, char **argv) {
    if (argc < 7) return 2;
    const char *dst = argv[2]; int port = atoi(argv[3]); double pps = atof(argv[4]);
    long long count = atoll(argv[5]); int size = atoi(argv[6]); double dur = argc > 7 ? atof(argv[7]) : 1e9;
    if (size < 12) size = 12;
    int fd = socket(AF_INET, SOCK_DGRAM, 0), big = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, dst, &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) { perror("connect"); return 1; }
    prctl(PR_SET_TIMERSLACK, 1UL);
    unsigned char (*buf)[9000] = calloc(64, 9000);
    long long sent = 0, errs = 0, i = 0;
    int64_t start = clk(CLOCK_MONOTONIC), end = start + (int64_t)(dur * 1e9);
    if (pps > 0) {
        double gap = 1e9 / pps;
        while (i < count) {
            int64_t target = start + (int64_t)(i * gap), now = clk(CLOCK_MONOTONIC);
            if (now > end) break;
            if (target > now) {
                struct timespec ts = {target / 1000000000LL, target % 1000000000LL};
                clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
                continue;
            }
            put_hdr(buf[0], (uint32_t)i, clk(CLOCK_REALTIME));
            if (send(fd, buf[0], size, 0) == size) sent++; else errs++;
            i++;
        }
    } else {
        struct mmsghdr mm[64]; struct iovec iov[64];
        while (i < count && clk(CLOCK_MONOTONIC) < end) {
            int n = count - i < 64 ? (int)(count - i) : 64;
            int64_t t = clk(CLOCK_REALTIME);
            for (int k = 0; k < n; k++) {
                put_hdr(buf[k], (uint32_t)(i + k), t);
                iov[k].iov_base = buf[k]; iov[k].iov_len = size;
                memset(&mm[k], 0, sizeof mm[k]); mm[k].msg_hdr.msg_iov = &iov[k]; mm[k].msg_hdr.msg_iovlen = 1;
            }
            int r = sendmmsg(fd, mm, n, 0);
            if (r < 0) { errs += n; r = n; } else { sent += r; errs += 0; }
            i += r;
        }
    }
    printf("sent %lld elapsed_s %.6f errors %lld\n", sent, (clk(CLOCK_MONOTONIC) - start) / 1e9, errs);
    return 0;
}

static volatile sig_atomic_t stop;
static void on_term(int s) { (void)s; stop = 1; }

static int do_recv(int argc, char **argv) {
    if (argc < 5) return 2;
    int port = atoi(argv[2]); double idle = atof(argv[3]); const char *out = argv[4];
    double first = argc > 5 ? atof(argv[5]) : 10.0;
    int fd = socket(AF_INET, SOCK_DGRAM, 0), one = 1, big = 32 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big);
    setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = INADDR_ANY};
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) { perror("bind"); return 1; }
    signal(SIGTERM, on_term);
    char ready[4096]; snprintf(ready, sizeof ready, "%s.ready", out);
    FILE *rf = fopen(ready, "w"); if (rf) { fputs("ready", rf); fclose(rf); }
    size_t cap = 1 << 16, n = 0; int64_t *rows = malloc(cap * 3 * sizeof *rows);
    enum { B = 64 };
    static unsigned char bufs[B][2048]; char cbuf[B][64];
    struct mmsghdr mm[B]; struct iovec iov[B];
    int64_t start = clk(CLOCK_MONOTONIC), last = -1;
    while (!stop) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, 50);
        int64_t now = clk(CLOCK_MONOTONIC);
        if (r <= 0) {
            if ((last >= 0 && now - last > idle * 1e9) || (last < 0 && now - start > first * 1e9)) break;
            continue;
        }
        last = now;
        for (int k = 0; k < B; k++) {
            iov[k].iov_base = bufs[k]; iov[k].iov_len = sizeof bufs[k];
            memset(&mm[k].msg_hdr, 0, sizeof mm[k].msg_hdr);
            mm[k].msg_hdr.msg_iov = &iov[k]; mm[k].msg_hdr.msg_iovlen = 1;
            mm[k].msg_hdr.msg_control = cbuf[k]; mm[k].msg_hdr.msg_controllen = sizeof cbuf[k];
        }
        int got = recvmmsg(fd, mm, B, MSG_DONTWAIT, NULL);
        for (int k = 0; k < got; k++) {
            if (mm[k].msg_len < 12) continue;
            int64_t tr = 0;
            for (struct cmsghdr *c = CMSG_FIRSTHDR(&mm[k].msg_hdr); c; c = CMSG_NXTHDR(&mm[k].msg_hdr, c))
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
                    struct timespec ts; memcpy(&ts, CMSG_DATA(c), sizeof ts);
                    tr = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
                }
            uint32_t s; memcpy(&s, bufs[k], 4);
            uint64_t ts = 0; for (int i = 0; i < 8; i++) ts = (ts << 8) | bufs[k][4 + i];
            if (n == cap) { cap *= 2; rows = realloc(rows, cap * 3 * sizeof *rows); }
            rows[3 * n] = ntohl(s); rows[3 * n + 1] = (int64_t)ts; rows[3 * n + 2] = tr ? tr : clk(CLOCK_REALTIME);
            n++;
        }
    }
    /* NumPy .npy v1.0: magic, header length, dict padded with spaces to a multiple of 64 */
    char hdr[128]; int hl = snprintf(hdr, sizeof hdr, "{'descr': '<i8', 'fortran_order': False, 'shape': (%zu, 3), }", n);
    int total = 10 + hl + 1, pad = (64 - total % 64) % 64;
    FILE *f = fopen(out, "wb"); if (!f) { perror("open"); return 1; }
    unsigned short len = (unsigned short)(hl + pad + 1);
    fwrite("\x93NUMPY\x01\x00", 1, 8, f); fwrite(&len, 2, 1, f); fwrite(hdr, 1, hl, f);
    for (int i = 0; i < pad; i++) fputc(' ', f);
    fputc('\n', f); fwrite(rows, sizeof *rows, 3 * n, f); fclose(f);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "send")) return do_send(argc, argv);
    if (argc > 1 && !strcmp(argv[1], "recv")) return do_recv(argc, argv);
    fprintf(stderr, "usage: udpprobe send DST PORT PPS COUNT SIZE [DURATION_S] | recv PORT IDLE_S OUT [FIRST_S]\n");
    return 2;
}
