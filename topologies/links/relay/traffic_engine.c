/* factorysat traffic engine: one process sends and receives every periodic / constant-rate flow of
 * a run (experiments/kinds/slices/engine.py drives it; experiments/agents/traffic.py is the Python
 * fallback with the same packets, raw records and summary files).
 *
 * Each socket is opened inside its host's network namespace (setns on /proc/PID/ns/net, then back);
 * packets leave on absolute CLOCK_REALTIME schedules T + k * interval from one timerfd/epoll loop
 * (wake EARLY_NS before a departure, then wait the rest on the clock: bounded); receivers take
 * kernel receive timestamps (SO_TIMESTAMPNS) and the TOS byte.
 *
 * stdin, one request per line, one reply line each ("ok" | "err <why>"):
 *   recv NAME PID PORT OUT            a receiving socket in PID's namespace; records to OUT
 *   send FLOW PID DST PORT BYTES INTERVAL_NS START_NS END_NS SUMMARY
 *   sendp FLOW PID DST PORT PATTERN START_NS END_NS SUMMARY
 *                                     a patterned flow: PATTERN is a text file "PERIOD_NS N" then N lines
 *                                     "OFFSET_NS BYTES"; packet k leaves at START + (k / N) * PERIOD +
 *                                     OFFSET[k % N] with BYTES[k % N] (experiments/kinds/slices/models.py)
 *   reply NAME CMD_FLOW FLOW DST PORT BYTES SUMMARY
 *                                     receiver NAME answers each packet of CMD_FLOW at once, from its own
 *                                     socket, with a packet of flow FLOW, the same seq, BYTES long (a
 *                                     control loop's status); SUMMARY is written at stop
 *   go                                start sending; "senders done" is printed when all have ended
 *   stop                              drain receivers, write OUT.done files, reply, exit 0
 * SIGTERM = stop. Packets carry (flow, seq, send_ns) in network order ("!IIQ"); a raw record is
 * little-endian (flow u32, seq u32, send_ns u64, recv_ns u64, bytes u32, tos u8, 3 pad). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

typedef long long ns_t;
#define MAX_FLOWS 8192
#define MAX_PATTERN 1000000    /* packets in one pattern period (sendp) */
#define MAX_RECV 256
#define BATCH 64
#define EARLY_NS 60000LL       /* wake this long before a departure, then wait on the clock */
#define DRAIN_LIMIT_NS 2000000000LL
#define RT_PRIO 8              /* SCHED_FIFO: below the relay (10) and the host-stall sentinel (20) */
#define SEND_BURST 64          /* overdue sends between two reads of the receive sockets */
#define RT_CPU_BUDGET 0.5      /* above half a CPU (e.g. an emulated guest), drop to normal priority */

struct flow {
    unsigned id; int fd; struct sockaddr_in dst; int bytes;
    ns_t interval, start, end, next; unsigned seq; long long sent, errors;
    int nerr; int err_code[8]; long long err_count[8]; char summary[512]; int done;
    int npat; ns_t *pat_off; int *pat_bytes;   /* a pattern (sendp), else npat = 0: BYTES every INTERVAL */
    unsigned reply_to; int recv;               /* a reply flow (reply): its command flow, its receiver */
    long long at_stop;                         /* reply flows: commands drained at stop, not answered */
};
struct recv {
    char name[64]; int fd, pid; char out[512]; FILE *f; long long received, drained;
    long long snmp_before[32]; int nsnmp; char snmp_names[32][24]; int nreply;
};

static struct flow flows[MAX_FLOWS]; static int nflows, heap[MAX_FLOWS], nheap;
static struct recv recvs[MAX_RECV]; static int nrecv;
static int home_ns = -1, rt_on = 0;
static volatile sig_atomic_t term = 0;
static void on_term(int s) { (void)s; term = 1; }

static ns_t real_ns(void) { struct timespec t; clock_gettime(CLOCK_REALTIME, &t); return t.tv_sec * 1000000000LL + t.tv_nsec; }

static int enter_ns(int pid) {
    char path[64]; snprintf(path, sizeof path, "/proc/%d/ns/net", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = setns(fd, CLONE_NEWNET); close(fd);
    return rc;
}
static void leave_ns(void) { if (setns(home_ns, CLONE_NEWNET) != 0) { perror("setns home"); exit(1); } }

/* This namespace's UDP counters (/proc/thread-self/net/snmp, "Udp:" header and values lines). */
static int read_snmp(char names[32][24], long long *vals) {
    FILE *f = fopen("/proc/thread-self/net/snmp", "r"); char a[1024], b[1024]; int n = 0;
    if (!f) return 0;
    while (fgets(a, sizeof a, f)) {
        if (strncmp(a, "Udp:", 4) || !fgets(b, sizeof b, f)) continue;
        char *sa, *sb, *ta = strtok_r(a + 4, " \n", &sa), *tb = strtok_r(b + 4, " \n", &sb);
        while (ta && tb && n < 32) { snprintf(names[n], 24, "%s", ta); vals[n++] = atoll(tb); ta = strtok_r(NULL, " \n", &sa); tb = strtok_r(NULL, " \n", &sb); }
        break;
    }
    fclose(f); return n;
}

/* Kernel drops of one socket: the "drops" column of /proc/thread-self/net/udp, by inode. */
static long long socket_drops(int fd) {
    struct stat st; char line[512]; long long drops = -1;
    if (fstat(fd, &st) != 0) return -1;
    FILE *f = fopen("/proc/thread-self/net/udp", "r");
    if (!f) return -1;
    while (fgets(line, sizeof line, f)) {
        unsigned long long inode; long long d; char *w = line; int col = 0;
        char *save, *tok = strtok_r(w, " \n", &save);
        for (inode = 0, d = -1; tok; tok = strtok_r(NULL, " \n", &save), col++) {
            if (col == 9) inode = strtoull(tok, NULL, 10);
            if (col == 12) d = atoll(tok);
        }
        if (inode == (unsigned long long)st.st_ino) { drops = d; break; }
    }
    fclose(f); return drops;
}

static void heap_swap(int a, int b) { int t = heap[a]; heap[a] = heap[b]; heap[b] = t; }
static void heap_down(int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < nheap && flows[heap[l]].next < flows[heap[m]].next) m = l;
        if (r < nheap && flows[heap[r]].next < flows[heap[m]].next) m = r;
        if (m == i) return;
        heap_swap(i, m); i = m;
    }
}
static void heap_up(int i) { while (i && flows[heap[i]].next < flows[heap[(i - 1) / 2]].next) { heap_swap(i, (i - 1) / 2); i = (i - 1) / 2; } }

static const char *errname(int e) {
    switch (e) { case EAGAIN: return "EAGAIN"; case ENOBUFS: return "ENOBUFS"; case ENETUNREACH: return "ENETUNREACH";
    case EHOSTUNREACH: return "EHOSTUNREACH"; case EPERM: return "EPERM"; case EMSGSIZE: return "EMSGSIZE";
    case ENETDOWN: return "ENETDOWN"; case EINVAL: return "EINVAL"; default: return NULL; }
}

static void write_summary(struct flow *f) {
    char tmp[600]; snprintf(tmp, sizeof tmp, "%s.tmp", f->summary);
    FILE *o = fopen(tmp, "w");
    if (!o) { fprintf(stderr, "traffic_engine: %s: %s\n", tmp, strerror(errno)); exit(1); }
    fprintf(o, "{\"flow_id\": %u, \"packets_scheduled\": %u, \"packets_sent\": %lld, \"send_errors\": %lld, "
            "\"send_errors_by_errno\": {", f->id, f->seq, f->sent, f->errors);
    for (int i = 0; i < f->nerr; i++) {
        const char *n = errname(f->err_code[i]);
        if (n) fprintf(o, "%s\"%s\": %lld", i ? ", " : "", n, f->err_count[i]);
        else fprintf(o, "%s\"%d\": %lld", i ? ", " : "", f->err_code[i], f->err_count[i]);
    }
    fprintf(o, "}, \"start_ns\": %lld, \"end_ns\": %lld, \"interval_ns\": %lld, \"pattern_packets\": %d, "
            "\"replies_to\": %u, \"commands_unanswered_at_stop\": %lld, \"engine\": \"c\"}\n",
            f->start, f->end, f->interval, f->npat, f->reply_to, f->at_stop);
    if (fclose(o) != 0 || rename(tmp, f->summary) != 0) { perror("traffic_engine: summary"); exit(1); }
    f->done = 1;
}

/* One packet (flow, seq, now) of BYTES from FD; counted in f. */
static void send_packet(struct flow *f, int fd, unsigned seq_no, int bytes) {
    static unsigned char buf[65536];
    uint32_t id = htonl(f->id), seq = htonl(seq_no);
    uint64_t be = htobe64((uint64_t)real_ns());
    memcpy(buf, &id, 4); memcpy(buf + 4, &seq, 4); memcpy(buf + 8, &be, 8);
    if (sendto(fd, buf, bytes, MSG_DONTWAIT, (struct sockaddr *)&f->dst, sizeof f->dst) == bytes) f->sent++;
    else {
        int e = errno, i; f->errors++;
        for (i = 0; i < f->nerr && f->err_code[i] != e; i++) {}
        if (i == f->nerr && f->nerr < 8) { f->err_code[f->nerr] = e; f->err_count[f->nerr++] = 0; }
        if (i < 8) f->err_count[i]++;
    }
}

static ns_t departure(const struct flow *f, unsigned seq) {
    if (!f->npat) return f->start + (ns_t)seq * f->interval;
    return f->start + (ns_t)(seq / f->npat) * f->interval + f->pat_off[seq % f->npat];
}

static void send_due(struct flow *f) {
    send_packet(f, f->fd, f->seq, f->npat ? f->pat_bytes[f->seq % f->npat] : f->bytes);
    f->seq++; f->next = departure(f, f->seq);
}

static void drain(struct recv *r, int at_stop) {
    struct mmsghdr mm[BATCH]; struct iovec iov[BATCH]; static unsigned char data[BATCH][2048];
    static char ctl[BATCH][128]; unsigned char rec[32];
    for (;;) {
        for (int i = 0; i < BATCH; i++) {
            iov[i].iov_base = data[i]; iov[i].iov_len = sizeof data[i];
            memset(&mm[i].msg_hdr, 0, sizeof mm[i].msg_hdr);
            mm[i].msg_hdr.msg_iov = &iov[i]; mm[i].msg_hdr.msg_iovlen = 1;
            mm[i].msg_hdr.msg_control = ctl[i]; mm[i].msg_hdr.msg_controllen = sizeof ctl[i];
        }
        int n = recvmmsg(r->fd, mm, BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0) return;
        for (int i = 0; i < n; i++) {
            ns_t rx = 0; unsigned char tos = 0; unsigned len = mm[i].msg_len;
            for (struct cmsghdr *c = CMSG_FIRSTHDR(&mm[i].msg_hdr); c; c = CMSG_NXTHDR(&mm[i].msg_hdr, c)) {
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
                    struct timespec ts; memcpy(&ts, CMSG_DATA(c), sizeof ts); rx = ts.tv_sec * 1000000000LL + ts.tv_nsec;
                } else if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_TOS) tos = *CMSG_DATA(c);
            }
            if (len < 16) continue;
            if (!rx) rx = real_ns();
            uint32_t id, seq, hi, lo; memcpy(&id, data[i], 4); memcpy(&seq, data[i] + 4, 4);
            memcpy(&hi, data[i] + 8, 4); memcpy(&lo, data[i] + 12, 4);
            uint32_t fid = ntohl(id), s = ntohl(seq); uint64_t sent = ((uint64_t)ntohl(hi) << 32) | ntohl(lo);
            uint64_t r64 = (uint64_t)rx;
            memset(rec, 0, sizeof rec);
            memcpy(rec, &fid, 4); memcpy(rec + 4, &s, 4); memcpy(rec + 8, &sent, 8); memcpy(rec + 16, &r64, 8);
            memcpy(rec + 24, &len, 4); rec[28] = tos;
            if (fwrite(rec, 1, 32, r->f) != 32) { perror("traffic_engine: record"); exit(1); }
            r->received++; r->drained += at_stop;
            for (int k = 0; r->nreply && k < nflows; k++) { /* a control loop's status answers its command */
                struct flow *q = &flows[k];
                if (q->recv != (int)(r - recvs) || q->reply_to != fid || !q->reply_to) continue;
                if (at_stop) q->at_stop++;
                else { send_packet(q, r->fd, s, q->bytes); q->seq++; }
            }
        }
    }
}

static void finish_receivers(void) {
    for (int i = 0; i < nrecv; i++) {
        struct recv *r = &recvs[i];
        ns_t limit = real_ns() + DRAIN_LIMIT_NS;
        long long before;
        do { before = r->received; drain(r, 1); usleep(1000); } while (r->received != before && real_ns() < limit);
        if (enter_ns(r->pid) != 0) { perror("traffic_engine: setns"); exit(1); }
        long long drops = socket_drops(r->fd), after[32]; char names[32][24];
        int n = read_snmp(names, after);
        leave_ns();
        if (fflush(r->f) != 0 || fsync(fileno(r->f)) != 0 || fclose(r->f) != 0) { perror("traffic_engine: records"); exit(1); }
        char done[600]; snprintf(done, sizeof done, "%s.done", r->out);
        FILE *o = fopen(done, "w");
        if (!o) { perror("traffic_engine: .done"); exit(1); }
        fprintf(o, "{\"packets_received\": %lld, \"drained_at_stop\": %lld, \"socket_drops\": ", r->received, r->drained);
        if (drops < 0) fprintf(o, "null"); else fprintf(o, "%lld", drops);
        fprintf(o, ", \"udp_snmp_delta\": {");
        int first = 1;
        for (int k = 0; k < n; k++)
            for (int j = 0; j < r->nsnmp; j++)
                if (!strcmp(names[k], r->snmp_names[j])) { fprintf(o, "%s\"%s\": %lld", first ? "" : ", ", names[k], after[k] - r->snmp_before[j]); first = 0; }
        fprintf(o, "}, \"engine\": \"c\", \"realtime_at_end\": %s}\n", rt_on ? "true" : "false");
        if (fclose(o) != 0) { perror("traffic_engine: .done"); exit(1); }
    }
}

static int open_socket(int pid, int rcvbuf) {
    if (enter_ns(pid) != 0) return -1;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1, snd = 4 << 20;
    if (fd >= 0) {
        if (rcvbuf) { setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf);
                      setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
                      setsockopt(fd, IPPROTO_IP, IP_RECVTOS, &one, sizeof one); }
        else setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &snd, sizeof snd);
    }
    return fd;
}

/* One control line; returns 1 on "go", 2 on "stop", 0 otherwise (the reply is printed). */
static int command(char *line) {
    char a[8][512]; int n = sscanf(line, "%511s %511s %511s %511s %511s %511s %511s %511s", a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]);
    if (n >= 5 && !strcmp(a[0], "recv") && nrecv < MAX_RECV) {
        struct recv *r = &recvs[nrecv]; memset(r, 0, sizeof *r);
        snprintf(r->name, sizeof r->name, "%.63s", a[1]); r->pid = atoi(a[2]); snprintf(r->out, sizeof r->out, "%.500s", a[4]);
        r->fd = open_socket(r->pid, 8 << 20);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(atoi(a[3])), .sin_addr.s_addr = INADDR_ANY};
        int ok = r->fd >= 0 && bind(r->fd, (struct sockaddr *)&sa, sizeof sa) == 0;
        if (ok) r->nsnmp = read_snmp(r->snmp_names, r->snmp_before);
        int e = errno; leave_ns();
        if (!ok) { printf("err recv %s: %s\n", r->name, strerror(e)); return 0; }
        if (!(r->f = fopen(r->out, "wb"))) { printf("err recv %s: %s: %s\n", r->name, r->out, strerror(errno)); return 0; }
        setvbuf(r->f, NULL, _IOFBF, 1 << 20);
        nrecv++; printf("ok\n"); return 0;
    }
    if (!strcmp(a[0], "send") && nflows < MAX_FLOWS) {
        char rest[3][512];
        if (n < 8 || sscanf(line, "%*s %*s %*s %*s %*s %*s %*s %511s %511s %511s", rest[0], rest[1], rest[2]) != 3) { printf("err send: 10 fields\n"); return 0; }
        struct flow *f = &flows[nflows]; memset(f, 0, sizeof *f);
        f->id = (unsigned)strtoul(a[1], NULL, 10); int pid = atoi(a[2]);
        f->dst.sin_family = AF_INET; f->dst.sin_port = htons(atoi(a[4]));
        f->bytes = atoi(a[5]); f->interval = atoll(a[6]); f->start = atoll(a[7]);
        f->end = atoll(rest[1]); snprintf(f->summary, sizeof f->summary, "%.500s", rest[2]);
        if (inet_pton(AF_INET, a[3], &f->dst.sin_addr) != 1 || f->bytes < 16 || f->bytes > 65507 || f->interval <= 0) { printf("err send %u: bad address, size 16..65507 or interval\n", f->id); return 0; }
        f->fd = open_socket(pid, 0); int e = errno; leave_ns();
        if (f->fd < 0) { printf("err send %u: %s\n", f->id, strerror(e)); return 0; }
        f->next = f->start; nflows++; printf("ok\n"); return 0;
    }
    if (!strcmp(a[0], "sendp") && nflows < MAX_FLOWS) {
        char rest[512];
        if (n < 8 || sscanf(line, "%*s %*s %*s %*s %*s %*s %*s %*s %511s", rest) != 1) { printf("err sendp: 9 fields\n"); return 0; }
        struct flow *f = &flows[nflows]; memset(f, 0, sizeof *f);
        f->id = (unsigned)strtoul(a[1], NULL, 10); int pid = atoi(a[2]);
        f->dst.sin_family = AF_INET; f->dst.sin_port = htons(atoi(a[4]));
        f->start = atoll(a[6]); f->end = atoll(a[7]); snprintf(f->summary, sizeof f->summary, "%.500s", rest);
        if (inet_pton(AF_INET, a[3], &f->dst.sin_addr) != 1) { printf("err sendp %u: bad address\n", f->id); return 0; }
        FILE *pf = fopen(a[5], "r"); long long period = 0; int np = 0;
        if (!pf || fscanf(pf, "%lld %d", &period, &np) != 2 || period <= 0 || np < 1 || np > MAX_PATTERN) {
            if (pf) fclose(pf);
            printf("err sendp %u: %s: want 'PERIOD_NS N' with PERIOD_NS > 0 and 1 <= N <= %d\n", f->id, a[5], MAX_PATTERN); return 0;
        }
        f->pat_off = malloc(sizeof(ns_t) * np); f->pat_bytes = malloc(sizeof(int) * np);
        if (!f->pat_off || !f->pat_bytes) { fclose(pf); printf("err sendp %u: out of memory\n", f->id); return 0; }
        for (int i = 0; i < np; i++) {
            long long off; int b;
            if (fscanf(pf, "%lld %d", &off, &b) != 2 || off < 0 || off >= period || b < 16 || b > 65507
                || (i && off < f->pat_off[i - 1])) {
                fclose(pf); free(f->pat_off); free(f->pat_bytes);
                printf("err sendp %u: line %d: want 'OFFSET_NS BYTES', 0 <= offsets < period, non-decreasing, 16..65507 bytes\n", f->id, i + 2);
                return 0;
            }
            f->pat_off[i] = off; f->pat_bytes[i] = b;
        }
        fclose(pf);
        f->npat = np; f->interval = period;
        f->fd = open_socket(pid, 0); int e = errno; leave_ns();
        if (f->fd < 0) { free(f->pat_off); free(f->pat_bytes); printf("err sendp %u: %s\n", f->id, strerror(e)); return 0; }
        f->next = departure(f, 0); nflows++; printf("ok\n"); return 0;
    }
    if (!strcmp(a[0], "reply") && nflows < MAX_FLOWS) {
        if (n < 8) { printf("err reply: 8 fields\n"); return 0; }
        int ri = -1;
        for (int i = 0; i < nrecv; i++) if (!strcmp(recvs[i].name, a[1])) ri = i;
        struct flow *f = &flows[nflows]; memset(f, 0, sizeof *f);
        f->reply_to = (unsigned)strtoul(a[2], NULL, 10); f->id = (unsigned)strtoul(a[3], NULL, 10);
        f->dst.sin_family = AF_INET; f->dst.sin_port = htons(atoi(a[5])); f->bytes = atoi(a[6]);
        snprintf(f->summary, sizeof f->summary, "%.500s", a[7]);
        if (ri < 0 || !f->reply_to || inet_pton(AF_INET, a[4], &f->dst.sin_addr) != 1 || f->bytes < 16 || f->bytes > 65507) {
            printf("err reply %u: unknown receiver, no command flow, bad address or size 16..65507\n", f->id); return 0;
        }
        f->recv = ri; f->fd = -1; recvs[ri].nreply++; nflows++; printf("ok\n"); return 0;
    }
    if (!strcmp(a[0], "go")) { printf("ok\n"); return 1; }
    if (!strcmp(a[0], "stop")) return 2;
    printf("err unknown request\n"); return 0;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sigaction sa; memset(&sa, 0, sizeof sa); sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL); sigaction(SIGINT, &sa, NULL);
    home_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (home_ns < 0) { perror("traffic_engine: own namespace"); return 1; }
    struct sched_param sp = {.sched_priority = RT_PRIO};
    rt_on = sched_setscheduler(0, SCHED_FIFO, &sp) == 0 && mlockall(MCL_CURRENT | MCL_FUTURE) == 0;
    printf("ok traffic engine ready rt=%d\n", rt_on);
    char line[2048]; int state = 0;
    while (state == 0 && !term && fgets(line, sizeof line, stdin)) state = command(line);
    if (state != 1) { if (state == 2 || term) { finish_receivers(); printf("ok stopped\n"); } return 0; }
    for (int i = 0; i < nflows; i++) {
        if (flows[i].reply_to) continue; /* answers commands: its summary is written at stop */
        if (flows[i].next >= flows[i].end) write_summary(&flows[i]);
        else { heap[nheap] = i; heap_up(nheap++); }
    }
    if (!nheap) printf("senders done\n");
    int ep = epoll_create1(EPOLL_CLOEXEC), tfd = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK | TFD_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN};
    ev.data.u32 = 1000000; epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
    ev.data.u32 = 1000001; fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK); epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev);
    for (int i = 0; i < nrecv; i++) { ev.data.u32 = i; epoll_ctl(ep, EPOLL_CTL_ADD, recvs[i].fd, &ev); }
    char buf[2048]; size_t used = 0; int stopping = 0;
    ns_t budget_at = real_ns() + 1000000000LL, cpu_mark = 0;
    { struct timespec c; clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c); cpu_mark = c.tv_sec * 1000000000LL + c.tv_nsec; }
    while (!term && !stopping) {
        ns_t now = real_ns();
        if (rt_on && now >= budget_at) { /* a real-time hog would starve the rest of the machine */
            struct timespec c; clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c);
            ns_t cpu = c.tv_sec * 1000000000LL + c.tv_nsec;
            if (cpu - cpu_mark > RT_CPU_BUDGET * (now - budget_at + 1000000000LL)) {
                struct sched_param normal = {.sched_priority = 0};
                if (sched_setscheduler(0, SCHED_OTHER, &normal) == 0) rt_on = 0;
                fprintf(stderr, "traffic_engine: over %.0f %% of a CPU: real-time priority dropped\n", 100 * RT_CPU_BUDGET);
            }
            cpu_mark = cpu; budget_at = now + 1000000000LL;
        }
        /* a late engine sends at most SEND_BURST overdue packets before it reads its receive
           sockets again: a backlog of sends never leaves them unread long enough to overflow */
        for (int burst = 0; nheap && flows[heap[0]].next <= now && burst < SEND_BURST; burst++) {
            struct flow *f = &flows[heap[0]];
            send_due(f);
            if (f->next >= f->end) { write_summary(f); heap[0] = heap[--nheap]; if (!nheap) printf("senders done\n"); }
            heap_down(0);
            now = real_ns();
        }
        int timeout = -1;
        if (nheap) {
            ns_t wake = flows[heap[0]].next - EARLY_NS;
            if (wake > now) {
                struct itimerspec its = {.it_value = {.tv_sec = wake / 1000000000LL, .tv_nsec = wake % 1000000000LL}};
                timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
            } else timeout = 0;
        }
        struct epoll_event evs[64];
        int n = epoll_wait(ep, evs, 64, timeout);
        for (int i = 0; i < n; i++) {
            unsigned id = evs[i].data.u32;
            if (id == 1000000) { uint64_t x; while (read(tfd, &x, sizeof x) > 0) {} }
            else if (id == 1000001) {
                ssize_t got = read(0, buf + used, sizeof buf - 1 - used);
                if (got == 0) stopping = 1; /* stdin closed: the runner is gone */
                if (got > 0) used += got;
                buf[used] = 0; char *nl;
                while ((nl = strchr(buf, '\n'))) {
                    *nl = 0;
                    if (!strncmp(buf, "stop", 4)) stopping = 1; else printf("err only stop now\n");
                    used -= nl + 1 - buf; memmove(buf, nl + 1, used); buf[used] = 0;
                }
                if (used >= sizeof buf - 1) used = 0;
            } else drain(&recvs[id], 0);
        }
        if (nheap) { /* the last stretch before a departure: wait on the clock (at most EARLY_NS) */
            ns_t due = flows[heap[0]].next;
            while (real_ns() < due && due - real_ns() <= EARLY_NS) {}
        }
    }
    finish_receivers();
    for (int i = 0; i < nheap; i++) write_summary(&flows[heap[i]]); /* stopped early: what was scheduled so far */
    for (int i = 0; i < nflows; i++) if (flows[i].reply_to) write_summary(&flows[i]);
    printf("ok stopped\n");
    return 0;
}
