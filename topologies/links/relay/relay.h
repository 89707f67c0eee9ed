/* factorysat link relay: types shared by the data path (relay.c) and the control channel (control.c). */
#ifndef FACTORYSAT_RELAY_H
#define FACTORYSAT_RELAY_H
#define _GNU_SOURCE
#include <stdint.h>

#define MAX_LINKS 4096           /* links served by one relay (slots are never moved) */

typedef int64_t ns_t;

struct params {
    ns_t delay_ns, jitter_ns;
    int jdist;                 /* 0 uniform, 1 normal, 2 pareto */
    double loss_p;             /* Bernoulli loss probability 0..1 */
    int ge;                    /* Gilbert-Elliott on? */
    double ge_p, ge_r, ge_lg, ge_lb;
    double rate_bps;           /* 0 = unlimited */
    long long qlim_pkts, qlim_bytes; /* 0 = unlimited */
    int up;
};

struct row { ns_t t; struct params p; };

struct pkt { struct pkt *next; ns_t dep; int len; unsigned char data[]; };

struct qent { ns_t tx_done; int len; };

/* Lateness histogram edges (ns) of the data path; relayctl.py LATE_EDGES_NS holds the same list. */
#define LATE_BUCKETS 14
extern const long long LATE_EDGE_NS[LATE_BUCKETS - 1];

struct dir {
    int in_fd, out_fd;
    struct row *sched; int nsched, sidx;
    struct pkt *head, *tail;
    ns_t last_dep, tx_free;
    struct qent *q; int qcap, qhead, qn; long long qbytes; /* serialiser queue */
    int ge_bad;
    int heap_pos;              /* -1 when not in heap */
    unsigned long long rx, tx, drop_loss, drop_queue, drop_down, drop_err, drop_mem, rx_bytes, tx_bytes;
    unsigned long long late_sum_ns, late_max_ns, late_over_50us; /* send time - departure time */
    unsigned long long late_hist[LATE_BUCKETS]; /* departures by lateness: <= LATE_EDGE_NS[i], last: beyond */
};

enum { UPLINK, DOWNLINK };   /* d[UPLINK]: A->B, d[DOWNLINK]: B->A */
extern const char *const DIR_NAME[2];

struct link { int used; int id; int fda, fdb; struct dir d[2]; };

/* relay.c: links and data path */
ns_t mono_ns(void);
void rng_seed(uint64_t s);
struct link *find_link(int id);
/* Serve a link between interfaces a and b; NULL on success, else a static error text (no "err"). */
const char *link_add(int id, const char *a, const char *b);
void link_del(struct link *L);
void dir_set_schedule(struct dir *d, struct row *rows, int n); /* takes ownership of rows */
void print_dir(const char *name, const struct dir *d);

/* control.c: the stdin/stdout control channel */
int ctl_input(void);         /* read what stdin has, answer every complete line; -1: quit or EOF */

#endif
