/* factorysat link relay: one process serving many emulated links over AF_PACKET sockets.
 *
 * Each link joins two interfaces of the relay's network namespace (A and B). Each direction
 * (uplink = A->B, downlink = B->A) is a FIFO: a packet arriving at time t (kernel receive
 * timestamp) is dropped if the direction is down or lost (Bernoulli or Gilbert-Elliott), otherwise
 * it is serialised at rate_bps behind a drop-tail queue (tx_done = max(t, tx_free) + bits / rate) and
 * leaves at dep = max(tx_done + delay + jitter_sample, previous dep), so order is always kept.
 * Parameters come from a per-direction schedule of (t_ns CLOCK_MONOTONIC, params) rows, picked by
 * the packet's arrival time, so schedule changes happen in the data path with no control lag.
 *
 * Class-based queue ("qos ID DIR N MAP W...", per direction): with it on and rate_bps > 0 the
 * direction is a non-preemptive priority serialiser instead. Loss, Gilbert-Elliott and up/down
 * still act at arrival; a packet that passes waits in the class MAP gives its DSCP (frame_dscp:
 * Ethernet II, at most one 802.1Q tag, IPv4 TOS >> 2 or IPv6 traffic class >> 2, else 0), each
 * class a drop-tail FIFO with qlim_pkts / qlim_bytes applied per class to its waiting packets
 * (the one in serialisation not counted). Whenever the serialiser is free at s (s = max(tx_free,
 * earliest waiting arrival)) it takes, among packets that had arrived by s, the head of the first
 * strict class (weight 0, lower index first), else of the weighted classes by deficit round robin
 * (quantum QOS_QUANTUM_BYTES * weight / smallest weight: each backlogged class gets at least its
 * weight's share of the rate, and idle classes' share goes to the others). It leaves at
 * dep = max(s + bits / rate + delay + jitter, previous dep): rate, delay and jitter of the row in
 * force at s. The main loop wakes at every serialisation start (qos_next_wake) as at departures.
 * With rate_bps == 0 (and nothing waiting) packets pass as without the queue (counted per class).
 * Reconfiguring ("qos" again, or "off") takes the waiting packets out in arrival order and puts
 * them into the new classes (by their DSCP), or, for off, serialises them back to back as the
 * FIFO would: nothing waiting is lost, and packets of one class stay in order.
 *
 * Control: one command per line on stdin, one reply line on stdout (control.c; the protocol is in
 * ../relayproc.py; ../pyrelay.py is the Python twin). Build: gcc -O2 -Wall -o relay relay.c control.c cell.c nrcell.c iface.c -lm
 */
#include "relay.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/ethtool.h>
#include <linux/if_packet.h>
#include <linux/sockios.h>
#include <math.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define FRAME_MAX 9232           /* jumbo frame + VLAN headroom */
#define MAX_MEM_BYTES (512LL << 20) /* all packets held by the relay, beyond this: dropped_mem */
#define MAX_BACKLOG_NS 1000000000000000LL /* serialiser backlog beyond this (~11.6 days): dropped_queue */
#define QOS_QUANTUM_BYTES 1514   /* DRR quantum of the class with the smallest weight: one full frame */

const char *const DIR_NAME[2] = {"uplink", "downlink"};

static struct link *links; static int nlinks;
static struct dir **heap; static int heapn; /* room for every direction: allocated with links */
static struct dir **qos_active; static int qos_nactive; /* directions with class-queued packets (same) */
static long long mem_bytes;
static int epfd;
static uint64_t rng_s[4] = {0x9E3779B97F4A7C15ULL, 0xBF58476D1CE4E5B9ULL, 0x94D049BB133111EBULL, 1};

ns_t mono_ns(void) {
    struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
    return (ns_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}
static ns_t real_ns(void) {
    struct timespec ts; clock_gettime(CLOCK_REALTIME, &ts);
    return (ns_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* xoshiro256** (Blackman & Vigna 2018), seeded with splitmix64 */
static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
static uint64_t rng_next(void) {
    uint64_t r = rotl(rng_s[1] * 5, 7) * 9, t = rng_s[1] << 17;
    rng_s[2] ^= rng_s[0]; rng_s[3] ^= rng_s[1]; rng_s[1] ^= rng_s[2]; rng_s[0] ^= rng_s[3];
    rng_s[2] ^= t; rng_s[3] = rotl(rng_s[3], 45);
    return r;
}
void rng_seed(uint64_t s) {
    for (int i = 0; i < 4; i++) {
        uint64_t z = (s += 0x9E3779B97F4A7C15ULL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL; z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        rng_s[i] = z ^ (z >> 31);
    }
}
static double urand(void) { return (rng_next() >> 11) * (1.0 / 9007199254740992.0); } /* [0,1) */

static ns_t jitter_sample(const struct params *p) {
    if (p->jitter_ns <= 0) return 0;
    double j = (double)p->jitter_ns, u;
    switch (p->jdist) {
    case 1: { /* normal, sigma = jitter (Box-Muller) */
        double u1 = urand(), u2 = urand();
        if (u1 < 1e-300) u1 = 1e-300;
        return (ns_t)(j * sqrt(-2.0 * log(u1)) * cos(2 * M_PI * u2));
    }
    case 2: { /* zero-mean Pareto, shape 3, scaled so its standard deviation is jitter */
        double xm = j / sqrt(0.75);
        u = 1.0 - urand();
        return (ns_t)(xm / cbrt(u) - 1.5 * xm);
    }
    default: /* uniform on [-jitter, +jitter] */
        return (ns_t)(j * (2.0 * urand() - 1.0));
    }
}

/* ---- heap of directions keyed by the departure time of their head packet ---- */
static void heap_swap(int a, int b) {
    struct dir *t = heap[a]; heap[a] = heap[b]; heap[b] = t;
    heap[a]->heap_pos = a; heap[b]->heap_pos = b;
}
static void heap_up(int i) {
    while (i > 0) { int p = (i - 1) / 2; if (heap[p]->head->dep <= heap[i]->head->dep) break; heap_swap(i, p); i = p; }
}
static void heap_down(int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < heapn && heap[l]->head->dep < heap[m]->head->dep) m = l;
        if (r < heapn && heap[r]->head->dep < heap[m]->head->dep) m = r;
        if (m == i) return;
        heap_swap(i, m); i = m;
    }
}
static void heap_push(struct dir *d) {
    heap[heapn] = d; d->heap_pos = heapn++; heap_up(heapn - 1);
}
static void heap_remove(struct dir *d) {
    int i = d->heap_pos; if (i < 0) return;
    d->heap_pos = -1; heapn--;
    if (i != heapn) { heap[i] = heap[heapn]; heap[i]->heap_pos = i; heap_up(i); heap_down(heap[i]->heap_pos); }
}

/* ---- per-direction data path ---- */
static const struct params *cur_params(struct dir *d, ns_t t) {
    while (d->sidx + 1 < d->nsched && d->sched[d->sidx + 1].t <= t) d->sidx++;
    return &d->sched[d->sidx].p;
}

static int lost(struct dir *d, const struct params *p) {
    if (p->ge) {
        double pl = d->ge_bad ? p->ge_lb : p->ge_lg;
        int l = pl > 0 && urand() < pl;
        if (d->ge_bad) { if (urand() < p->ge_r) d->ge_bad = 0; }
        else if (urand() < p->ge_p) d->ge_bad = 1;
        return l;
    }
    return p->loss_p > 0 && urand() < p->loss_p;
}

/* k leaves d after its serialisation ends at tx_done: the departure list is FIFO, dep never earlier
 * than the previous one. */
static void depart(struct dir *d, struct pkt *k, ns_t tx_done, const struct params *p) {
    ns_t dep = tx_done + p->delay_ns + jitter_sample(p);
    if (dep < tx_done) dep = tx_done;
    if (dep < d->last_dep) dep = d->last_dep;
    d->last_dep = dep;
    k->next = NULL; k->dep = dep;
    if (d->tail) d->tail->next = k; else d->head = k;
    d->tail = k;
    if (d->heap_pos < 0) heap_push(d);
}

/* ---- class-based queues ---- */
int frame_dscp(const unsigned char *f, int len) {
    if (len < 14) return 0;
    int off = 14; unsigned et = (unsigned)f[12] << 8 | f[13];
    if (et == 0x8100) {
        if (len < 18) return 0;
        et = (unsigned)f[16] << 8 | f[17]; off = 18;
    }
    if (len < off + 2) return 0;
    if (et == 0x0800 && f[off] >> 4 == 4) return f[off + 1] >> 2;
    if (et == 0x86DD && f[off] >> 4 == 6) return ((f[off] & 0x0f) << 4 | f[off + 1] >> 4) >> 2;
    return 0;
}

static void qos_activate(struct dir *d) {
    if (d->qos->active_pos >= 0) return;
    d->qos->active_pos = qos_nactive; qos_active[qos_nactive++] = d;
}
static void qos_deactivate(struct dir *d) {
    int i = d->qos->active_pos;
    if (i < 0) return;
    d->qos->active_pos = -1; qos_active[i] = qos_active[--qos_nactive];
    if (i < qos_nactive) qos_active[i]->qos->active_pos = i;
}
static void class_push(struct qclass *c, struct pkt *k) {
    k->next = NULL;
    if (c->tail) c->tail->next = k; else c->head = k;
    c->tail = k; c->n++; c->bytes += k->len;
    if ((unsigned long long)c->n > c->queue_max) c->queue_max = c->n;
}
static struct pkt *class_pop(struct qclass *c) {
    struct pkt *k = c->head;
    c->head = k->next;
    if (!c->head) c->tail = NULL;
    c->n--; c->bytes -= k->len;
    return k;
}
static int eligible(const struct qclass *c, ns_t s) { return c->head && c->head->dep <= s; }

/* The class the serialiser takes from at s: the first strict class with a packet that had arrived by
 * s, else deficit round robin over the weighted ones; -1: none. */
static int qos_pick(struct qos *q, ns_t s) {
    int any = 0;
    for (int i = 0; i < q->n; i++)
        if (eligible(&q->c[i], s)) { if (!q->c[i].weight) return i; any = 1; }
    if (!any) return -1;
    for (;;) { /* ends: every visit credits each eligible class a quantum (>= 1514 bytes) */
        struct qclass *c = &q->c[q->rr];
        if (c->weight && eligible(c, s)) {
            if (q->rr_fresh) { c->deficit += c->quantum; q->rr_fresh = 0; }
            if (c->head->len <= c->deficit) { c->deficit -= c->head->len; return q->rr; }
        } else c->deficit = 0; /* an idle (or strict) class keeps no credit */
        q->rr = (q->rr + 1) % q->n; q->rr_fresh = 1;
    }
}

/* The earliest serialisation start of d: max(tx_free, earliest waiting arrival); INT64_MAX: none. */
static ns_t qos_start(const struct dir *d) {
    const struct qos *q = d->qos; ns_t first = INT64_MAX;
    for (int i = 0; i < q->n; i++) if (q->c[i].head && q->c[i].head->dep < first) first = q->c[i].head->dep;
    return first == INT64_MAX || d->tx_free <= first ? first : d->tx_free;
}

/* Every serialisation start of d up to now, in order. */
static void qos_serve(struct dir *d, ns_t now) {
    struct qos *q = d->qos; ns_t s;
    while (q->waiting > 0 && (s = qos_start(d)) <= now) {
        struct qclass *c = &q->c[qos_pick(q, s)];
        struct pkt *k = class_pop(c); q->waiting--;
        const struct params *p = cur_params(d, s);
        unsigned long long wait = (unsigned long long)(s - k->dep);
        c->tx++; c->tx_bytes += k->len; c->wait_sum_ns += wait;
        if (wait > c->wait_max_ns) c->wait_max_ns = wait;
        d->tx_free = s + (p->rate_bps > 0 ? (ns_t)(k->len * 8.0 * 1e9 / p->rate_bps) : 0);
        depart(d, k, d->tx_free, p);
    }
    if (!q->waiting) qos_deactivate(d);
}

void qos_run(ns_t now) {
    for (int j = qos_nactive - 1; j >= 0; j--) qos_serve(qos_active[j], now); /* a drained one swaps in a served one */
}

ns_t qos_next_wake(void) {
    ns_t next = INT64_MAX;
    for (int j = 0; j < qos_nactive; j++) { ns_t s = qos_start(qos_active[j]); if (s < next) next = s; }
    return next;
}

static void qos_arrive(struct dir *d, const struct params *p, const unsigned char *data, int len, ns_t t_arr) {
    struct qos *q = d->qos;
    struct qclass *c = &q->c[q->map[frame_dscp(data, len)]];
    c->rx++;
    if ((p->qlim_pkts > 0 && c->n + 1 > p->qlim_pkts) || (p->qlim_bytes > 0 && c->bytes + len > p->qlim_bytes)) {
        c->drop_queue++; d->drop_queue++; return;
    }
    struct pkt *k = malloc(sizeof *k + len);
    if (!k) { d->drop_err++; return; }
    k->dep = t_arr; k->len = len; memcpy(k->data, data, len); /* dep: its arrival, while it waits */
    mem_bytes += len;
    class_push(c, k); q->waiting++;
    qos_activate(d);
    qos_serve(d, t_arr); /* starts up to its arrival: a chain inside the relay adds no wake-up latency */
}

const char *dir_set_qos(struct dir *d, int n, const unsigned char *map, const int *w) {
    struct qos *q = d->qos;
    if (!q) {
        if (!n) return NULL;
        if (!(q = calloc(1, sizeof *q))) return "out of memory";
        q->active_pos = -1; d->qos = q;
    }
    /* the waiting packets in arrival order: a stable merge of the class FIFOs */
    struct pkt *all = NULL, **tail = &all;
    for (;;) {
        int b = -1;
        for (int i = 0; i < q->n; i++) if (q->c[i].head && (b < 0 || q->c[i].head->dep < q->c[b].head->dep)) b = i;
        if (b < 0) break;
        struct pkt *k = class_pop(&q->c[b]); *tail = k; tail = &k->next;
    }
    *tail = NULL; q->waiting = 0;
    q->on = n > 0;
    if (n) { /* counters of class i carry over from the previous configuration's class i */
        long long wmin = 0;
        for (int i = 0; i < n; i++) if (w[i] && (!wmin || w[i] < wmin)) wmin = w[i];
        for (int i = 0; i < n; i++) {
            q->c[i].weight = w[i]; q->c[i].deficit = 0;
            q->c[i].quantum = w[i] ? (QOS_QUANTUM_BYTES * (long long)w[i] + wmin - 1) / wmin : 0;
        }
        q->n = n; memcpy(q->map, map, QOS_NDSCP); q->rr = 0; q->rr_fresh = 1;
    }
    while (all) {
        struct pkt *k = all; all = k->next;
        if (n) { class_push(&q->c[q->map[frame_dscp(k->data, k->len)]], k); q->waiting++; continue; }
        const struct params *p = cur_params(d, k->dep); /* off: back to back, as the FIFO would */
        ns_t s = k->dep > d->tx_free ? k->dep : d->tx_free;
        d->tx_free = s + (p->rate_bps > 0 ? (ns_t)(k->len * 8.0 * 1e9 / p->rate_bps) : 0);
        depart(d, k, d->tx_free, p);
    }
    if (q->waiting) qos_activate(d); else qos_deactivate(d);
    return NULL;
}

void dir_enqueue(struct dir *d, const unsigned char *data, int len, ns_t t_arr) {
    const struct params *p = cur_params(d, t_arr);
    struct qos *q = d->qos;
    d->rx++; d->rx_bytes += len;
    if (!p->up) { d->drop_down++; return; }
    if (lost(d, p)) { d->drop_loss++; return; }
    if (mem_bytes + len > MAX_MEM_BYTES) { d->drop_mem++; return; } /* the emulator's limit, not the model's */
    if (q && q->on && (p->rate_bps > 0 || q->waiting)) { qos_arrive(d, p, data, len, t_arr); return; }
    ns_t t = t_arr, wait = 0; /* wait: from arrival to serialisation start (FIFO serialiser) */
    if (p->rate_bps > 0) {
        while (d->qn > 0 && d->q[d->qhead].tx_done <= t_arr) {
            d->qbytes -= d->q[d->qhead].len; d->qhead = (d->qhead + 1) % d->qcap; d->qn--;
        }
        ns_t start = t_arr > d->tx_free ? t_arr : d->tx_free;
        wait = start - t_arr;
        if ((p->qlim_pkts > 0 && d->qn + 1 > p->qlim_pkts) || (p->qlim_bytes > 0 && d->qbytes + len > p->qlim_bytes)
            || start - t_arr > MAX_BACKLOG_NS) {
            d->drop_queue++; return;
        }
        if (d->qn == d->qcap) { /* grow ring; out of memory: the packet is dropped_error */
            int nc = d->qcap ? d->qcap * 2 : 256;
            struct qent *nq = nc > 0 ? malloc((size_t)nc * sizeof *nq) : NULL;
            if (!nq) { d->drop_err++; return; }
            for (int i = 0; i < d->qn; i++) nq[i] = d->q[(d->qhead + i) % d->qcap];
            free(d->q); d->q = nq; d->qcap = nc; d->qhead = 0;
        }
        t = start + (ns_t)(len * 8.0 * 1e9 / p->rate_bps);
    }
    struct pkt *k = malloc(sizeof *k + len);
    if (!k) { d->drop_err++; return; }
    if (p->rate_bps > 0) {
        d->tx_free = t;
        d->q[(d->qhead + d->qn) % d->qcap] = (struct qent){t, len}; d->qn++; d->qbytes += len;
        d->serialised++; d->wait_sum_ns += (unsigned long long)wait;
        if ((unsigned long long)wait > d->wait_max_ns) d->wait_max_ns = (unsigned long long)wait;
    }
    if (q && q->on) { /* no serialiser: the classes only count */
        struct qclass *c = &q->c[q->map[frame_dscp(data, len)]];
        c->rx++; c->tx++; c->tx_bytes += len;
    }
    k->len = len; memcpy(k->data, data, len);
    mem_bytes += len;
    depart(d, k, t, p);
}

void dir_insert_at(struct dir *d, const unsigned char *data, int len, ns_t dep) {
    struct pkt *k = malloc(sizeof *k + len);
    if (!k) { d->drop_err++; return; }
    k->dep = dep; k->len = len; memcpy(k->data, data, len);
    mem_bytes += len;
    if (!d->tail || d->tail->dep <= dep) {
        k->next = NULL;
        if (d->tail) d->tail->next = k; else d->head = k;
        d->tail = k;
    } else if (d->head->dep > dep) { k->next = d->head; d->head = k; }
    else {
        struct pkt *p = d->head;
        while (p->next && p->next->dep <= dep) p = p->next;
        k->next = p->next; p->next = k;
    }
    if (d->heap_pos < 0) heap_push(d);
    else if (d->head == k) { heap_remove(d); heap_push(d); } /* an earlier head: its key changed */
}

double rng_uniform(void) { return urand(); }

/* A send the kernel refused for lack of room (ENOBUFS: the receiving CPU's backlog is full, e.g.
 * while this real-time process keeps ksoftirqd from draining it) is tried again after a short sleep
 * that lets it drain, up to SEND_RETRIES times per batch; the wait shows as lateness (late_hist) and
 * in tx_retries. Still refused after the retries, that one packet is dropped_full (the host could not
 * take it); any other failure drops it as dropped_error; never the rest of its batch. */
#define SEND_RETRIES 20
#define SEND_RETRY_SLEEP_NS 50000

static void flush_dir(struct dir *d, ns_t now) {
    struct mmsghdr mm[BATCH]; struct iovec iov[BATCH]; struct pkt *ks[BATCH];
    int retries = 0;
    while (d->head && d->head->dep <= now) {
        int n = 0;
        for (struct pkt *k = d->head; k && k->dep <= now && n < BATCH; k = k->next, n++) {
            ks[n] = k; iov[n].iov_base = k->data; iov[n].iov_len = k->len;
            memset(&mm[n], 0, sizeof mm[n]); mm[n].msg_hdr.msg_iov = &iov[n]; mm[n].msg_hdr.msg_iovlen = 1;
        }
        int sent = sendmmsg(d->out_fd, mm, n, MSG_DONTWAIT), dropped = 0, full = 0;
        if (sent < 0) {
            full = errno == ENOBUFS || errno == EAGAIN;
            if (full && retries < SEND_RETRIES) {
                struct timespec ts = {0, SEND_RETRY_SLEEP_NS};
                retries++; d->tx_retries++;
                nanosleep(&ts, NULL);
                now = mono_ns();
                continue;  /* the same packets again */
            }
            sent = 0; dropped = 1;  /* the first one failed for good: count it, try the rest */
        }
        for (int i = 0; i < sent + dropped; i++) {
            if (i < sent) {
                ns_t late = now - ks[i]->dep;
                d->tx++; d->tx_bytes += ks[i]->len; d->late_sum_ns += late;
                if ((unsigned long long)late > d->late_max_ns) d->late_max_ns = late;
                if (late > 50000) d->late_over_50us++;
                int b = 0;
                while (b < LATE_BUCKETS - 1 && late > LATE_EDGE_NS[b]) b++;
                d->late_hist[b]++;
            }
            else if (full) d->drop_full++; /* still full after the retries: count, never block */
            else d->drop_err++;            /* interface gone, or another failure */
            d->head = ks[i]->next; mem_bytes -= ks[i]->len; free(ks[i]);
        }
        if (!d->head) d->tail = NULL;
    }
    heap_remove(d);
    if (d->head) heap_push(d);
}

/* A direction towards the inside (cell.c): one packet at a time, so the next direction receives
 * packets in departure order across all directions. */
static void flush_inside(struct dir *d) {
    struct pkt *k = d->head;
    d->head = k->next;
    if (!d->head) d->tail = NULL;
    mem_bytes -= k->len;
    heap_remove(d);
    if (d->head) heap_push(d);
    if (cell_forward(d, k->data, k->len, k->dep)) { d->tx++; d->tx_bytes += k->len; }
    else d->drop_unwired++;
    free(k);
}

static void flush_due(ns_t now) {
    while (heapn > 0 && heap[0]->head->dep <= now) {
        if (heap[0]->out_fd < 0) flush_inside(heap[0]);
        else flush_dir(heap[0], now);
    }
}

static unsigned char rxbuf[BATCH][FRAME_MAX];

static void read_socket(struct dir *d) {
    struct mmsghdr mm[BATCH]; struct iovec iov[BATCH]; char cbuf[BATCH][64];
    for (int i = 0; i < BATCH; i++) {
        iov[i].iov_base = rxbuf[i]; iov[i].iov_len = FRAME_MAX;
        memset(&mm[i].msg_hdr, 0, sizeof mm[i].msg_hdr);
        mm[i].msg_hdr.msg_iov = &iov[i]; mm[i].msg_hdr.msg_iovlen = 1;
        mm[i].msg_hdr.msg_control = cbuf[i]; mm[i].msg_hdr.msg_controllen = sizeof cbuf[i];
    }
    int n = recvmmsg(d->in_fd, mm, BATCH, MSG_DONTWAIT | MSG_TRUNC, NULL);
    if (n <= 0) return;
    ns_t off = real_ns() - mono_ns(), now = mono_ns();
    for (int i = 0; i < n; i++) {
        ns_t t = now;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mm[i].msg_hdr); c; c = CMSG_NXTHDR(&mm[i].msg_hdr, c))
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
                struct timespec ts; memcpy(&ts, CMSG_DATA(c), sizeof ts);
                t = (ns_t)ts.tv_sec * 1000000000LL + ts.tv_nsec - off;
                if (t > now) t = now;
            }
        int len = (int)mm[i].msg_len;
        if (len > FRAME_MAX) { d->rx++; d->drop_err++; continue; }
        dir_enqueue(d, rxbuf[i], len, t);
    }
}

/* ---- links ---- */
struct link *links_table(int *n) { *n = nlinks; return links; }

struct link *find_link(int id) {
    for (int i = 0; i < nlinks; i++) if (links[i].used && links[i].id == id) return &links[i];
    return NULL;
}

static void free_dir(struct dir *d) {
    heap_remove(d);
    while (d->head) { struct pkt *k = d->head; d->head = k->next; mem_bytes -= k->len; free(k); }
    d->tail = NULL; free(d->sched); d->sched = NULL; free(d->q); d->q = NULL;
    if (d->qos) {
        qos_deactivate(d);
        for (int i = 0; i < QOS_MAX_CLASSES; i++)
            while (d->qos->c[i].head) { struct pkt *k = class_pop(&d->qos->c[i]); mem_bytes -= k->len; free(k); }
        free(d->qos); d->qos = NULL;
    }
}

static void epoll_add(int fd, int tag) {
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)tag};
    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

const char *link_add(int id, const char *a, const char *b) {
    static char msg[128];
    int ia, ib, slot = -1;
    if (find_link(id)) { snprintf(msg, sizeof msg, "link %d exists", id); return msg; }
    for (int i = 0; i < nlinks; i++) if (!links[i].used) { slot = i; break; }
    if (slot < 0 && nlinks == MAX_LINKS) { snprintf(msg, sizeof msg, "too many links (max %d)", MAX_LINKS); return msg; }
    if (!links) { /* both arrays once, at their maximum size: directions in the heap hold pointers */
        links = calloc(MAX_LINKS, sizeof *links); heap = calloc(2 * MAX_LINKS, sizeof *heap);
        qos_active = calloc(2 * MAX_LINKS, sizeof *qos_active);
        if (!links || !heap || !qos_active) {
            free(links); free(heap); free(qos_active); links = NULL; heap = NULL; qos_active = NULL;
            return "out of memory";
        }
    }
    struct row *sa = calloc(1, sizeof *sa), *sb = calloc(1, sizeof *sb);
    if (!sa || !sb) { free(sa); free(sb); return "out of memory"; }
    int in_a = !strcmp(a, INSIDE), in_b = !strcmp(b, INSIDE); /* "-": that end is inside (cell.c) */
    const char *bad = !in_a && if_setup(a, &ia) ? a : !in_b && if_setup(b, &ib) ? b : NULL;
    if (bad) { free(sa); free(sb); snprintf(msg, sizeof msg, "no such interface %s", bad); return msg; }
    int fa = in_a ? -1 : open_pkt_socket(ia), fb = (!in_a && fa < 0) || in_b ? -1 : open_pkt_socket(ib);
    if ((!in_a && fa < 0) || (!in_b && fb < 0)) {
        snprintf(msg, sizeof msg, "socket: %s", strerror(errno));
        if (fa >= 0) close(fa);
        free(sa); free(sb); return msg;
    }
    if (slot < 0) slot = nlinks++;
    struct link *L = &links[slot]; memset(L, 0, sizeof *L);
    L->used = 1; L->id = id; L->fda = fa; L->fdb = fb;
    for (int k = 0; k < 2; k++) {
        struct dir *d = &L->d[k];
        d->in_fd = k == UPLINK ? fa : fb; d->out_fd = k == UPLINK ? fb : fa; d->heap_pos = -1;
        d->sched = k == UPLINK ? sa : sb; d->nsched = 1; d->sched[0].p.up = 1; d->owner = L;
    }
    if (fa >= 0) epoll_add(fa, slot * 2);
    if (fb >= 0) epoll_add(fb, slot * 2 + 1);
    return NULL;
}

void link_del(struct link *L) {
    nr_free(L);
    cell_unwire(L);
    free_dir(&L->d[UPLINK]); free_dir(&L->d[DOWNLINK]);
    if (L->fda >= 0) close(L->fda);
    if (L->fdb >= 0) close(L->fdb);
    L->used = 0; /* closing removes them from epoll */
}

void dir_set_schedule(struct dir *d, struct row *rows, int n) {
    free(d->sched); d->sched = rows; d->nsched = n; d->sidx = 0;
}

/* Wake-up overshoot of timed sleeps in this VM varies (tens of us); wake early by its recent p99
 * plus a margin and spin the rest, so departures are on time without spinning all the time. */
#define WAKE_RING 256
static ns_t wake_over[WAKE_RING]; static int wake_n;
static ns_t early_min_ns = 20000, early_max_ns = 300000;
static int cmp_ns(const void *a, const void *b) { ns_t x = *(const ns_t *)a, y = *(const ns_t *)b; return (x > y) - (x < y); }
static ns_t adapt_early(ns_t over, ns_t early) {
    wake_over[wake_n++ % WAKE_RING] = over;
    if (wake_n % 64 || wake_n < WAKE_RING) return early;
    ns_t tmp[WAKE_RING]; memcpy(tmp, wake_over, sizeof tmp); qsort(tmp, WAKE_RING, sizeof tmp[0], cmp_ns);
    ns_t e = tmp[WAKE_RING * 99 / 100] + 10000;
    return e < early_min_ns ? early_min_ns : e > early_max_ns ? early_max_ns : e;
}

int main(int argc, char **argv) {
    ns_t early_ns = 100000; /* initial: wake this long before a departure, then spin */
    int no_v6 = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--early-us") && i + 1 < argc) early_ns = atoll(argv[++i]) * 1000;
        else if (!strcmp(argv[i], "--early-min-us") && i + 1 < argc) early_min_ns = atoll(argv[++i]) * 1000;
        else if (!strcmp(argv[i], "--early-max-us") && i + 1 < argc) early_max_ns = atoll(argv[++i]) * 1000;
        else if (!strcmp(argv[i], "--disable-ipv6")) no_v6 = 1; /* in the relay's own netns only */
        else if (!strcmp(argv[i], "--rt")) {
            struct sched_param sp = {.sched_priority = 10};
            if (sched_setscheduler(0, SCHED_FIFO, &sp) != 0) fprintf(stderr, "relay: SCHED_FIFO: %s\n", strerror(errno));
        }
    }
    prctl(PR_SET_TIMERSLACK, 1UL);
    prctl(PR_SET_PDEATHSIG, 15);
    rng_seed((uint64_t)mono_ns());
    const char *v6[] = {"/proc/sys/net/ipv6/conf/all/disable_ipv6", "/proc/sys/net/ipv6/conf/default/disable_ipv6"};
    for (int i = 0; no_v6 && i < 2; i++) { FILE *f = fopen(v6[i], "w"); if (f) { fputs("1", f); fclose(f); } }
    epfd = epoll_create1(0);
    fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
    epoll_add(0, -1);
    printf("ok relay ready\n"); fflush(stdout);
    struct epoll_event ev[64];
    for (;;) {
        ns_t now = mono_ns();
        nr_run(now);
        qos_run(now);
        flush_due(now);
        int n;
        ns_t next = nr_next_wake(), qnext = qos_next_wake(); /* a serialisation start wakes like a departure */
        if (qnext < next) next = qnext;
        if (heapn > 0 && heap[0]->head->dep < next) next = heap[0]->head->dep;
        if (next == INT64_MAX) n = epoll_wait(epfd, ev, 64, -1);
        else {
            ns_t wake_at = next - early_ns, wait = wake_at - now;
            if (wait > 0) {
                struct timespec ts = {wait / 1000000000LL, wait % 1000000000LL};
                n = epoll_pwait2(epfd, ev, 64, &ts, NULL);
                if (n == 0) early_ns = adapt_early(mono_ns() - wake_at, early_ns);
            } else n = epoll_wait(epfd, ev, 64, 0); /* spin until the departure */
        }
        for (int i = 0; i < n; i++) {
            int64_t tag = (int64_t)ev[i].data.u64;
            if (tag < 0) {
                if (ctl_input() < 0) return 0; /* control: stdin is non-blocking */
                continue;
            }
            struct link *L = &links[tag / 2];
            if (L->used) read_socket(&L->d[tag % 2]);
        }
    }
}
