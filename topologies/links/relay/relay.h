/* factorysat link relay: types shared by the data path (relay.c) and the control channel (control.c). */
#ifndef FACTORYSAT_RELAY_H
#define FACTORYSAT_RELAY_H
#define _GNU_SOURCE
#include <stdint.h>

#define MAX_LINKS 4096           /* links served by one relay (slots are never moved) */
#define INSIDE "-"               /* a link end with no interface: inside the relay (cell.c) */

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

/* Class-based queue of a direction ("qos" command; relay.c says how it serves). */
#define QOS_MAX_CLASSES 8
#define QOS_MAX_WEIGHT 1000000
#define QOS_NDSCP 64
struct qclass {
    struct pkt *head, *tail;   /* waiting packets in arrival order; a waiting pkt's dep holds its arrival time */
    int n;                     /* packets waiting */
    long long bytes;           /* bytes waiting */
    int weight;                /* 0: strict priority; 1..QOS_MAX_WEIGHT: deficit-round-robin weight */
    long long quantum;         /* DRR: bytes credited per visit (QOS_QUANTUM_BYTES * weight / smallest weight) */
    long long deficit;         /* DRR: bytes the class may still send on this visit */
    unsigned long long rx;     /* packets classified into it (after loss and up/down) */
    unsigned long long tx, tx_bytes; /* packets (bytes) the serialiser took from it; each leaves at its dep */
    unsigned long long drop_queue; /* dropped by its drop-tail limit (counted in the direction's too) */
    unsigned long long queue_max;  /* most packets ever waiting in it */
    unsigned long long wait_sum_ns, wait_max_ns; /* over tx: arrival -> serialisation start */
};
struct qos {
    int on;                    /* 0 after "qos ... off": the counters stay, the direction is one FIFO again */
    int n;                     /* classes (1..QOS_MAX_CLASSES) of the last configuration */
    unsigned char map[QOS_NDSCP]; /* DSCP -> class */
    struct qclass c[QOS_MAX_CLASSES];
    int waiting;               /* packets waiting in all classes */
    int rr;                    /* DRR: the weighted class whose visit it is */
    int rr_fresh;              /* DRR: rr has not been credited its quantum on this visit yet */
    int active_pos;            /* index in relay.c's list of directions with packets waiting, -1: none */
};

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
    unsigned long long drop_unwired; /* left towards the inside, and nothing was wired there (cell.c) */
    unsigned long long xn_forwarded; /* a cell's downlink: frames for a UE now in another cell (cell.c) */
    unsigned long long tx_retries; /* sends refused for lack of room (ENOBUFS) and tried again (relay.c) */
    unsigned long long drop_full;  /* still refused for lack of room after every retry: the host's receive
                                    * backlog stayed full (e.g. a host stall), not a relay fault (relay.c) */
    unsigned long long serialised, wait_sum_ns, wait_max_ns; /* the FIFO serialiser (rate set, no qos):
                                * packets accepted, their waits from arrival to serialisation start */
    struct link *owner;        /* the link of this direction */
    struct dir *next;          /* out_fd < 0: the direction its packets enter next (cell.c), or NULL */
    struct qos *qos;           /* its class-based queue ("qos"), NULL if it never had one */
};

enum { UPLINK, DOWNLINK };   /* d[UPLINK]: A->B, d[DOWNLINK]: B->A */
extern const char *const DIR_NAME[2];

/* fda / fdb < 0: that end is inside the relay (a cell's port, cell.c). */
struct link {
    int used; int id; int fda, fdb; struct dir d[2];
    struct link *cell;         /* a UE radio link: the cell it is in */
    unsigned char mac[6];      /* a UE radio link: its UE's address (the cell's downlink delivers by it) */
    int n3_dscp;               /* a UE radio link: 1 + the DSCP its uplink packets get entering the cell
                                * (the gNB's N3 transport marking, cell.c); 0: left as they are */
    struct link *n3, *n3_of;   /* a cell: its backhaul link; a backhaul link: its cell */
    struct link **members; int nmembers, cap_members; /* a cell: its UE radio links */
    struct nrcell *nr;         /* a cell with the NR slot model (nrcell.c), else NULL */
    struct nr_ue *nru;         /* a UE radio link in an NR cell: its MAC state (nrcell.c) */
};

/* relay.c: links and data path */
ns_t mono_ns(void);
void rng_seed(uint64_t s);
struct link *find_link(int id);
struct link *links_table(int *n);  /* every link slot (used or not) and how many there are */
/* Serve a link between interfaces a and b; NULL on success, else a static error text (no "err"). */
const char *link_add(int id, const char *a, const char *b);
void link_del(struct link *L);
void dir_set_schedule(struct dir *d, struct row *rows, int n); /* takes ownership of rows */
/* Class-based queue of d: n classes (0 = off, back to the FIFO), map[dscp] = class, w[i] = weight (0 strict);
 * NULL on success, else a static error text. Packets waiting keep their order (relay.c). */
const char *dir_set_qos(struct dir *d, int n, const unsigned char *map, const int *w);
int frame_dscp(const unsigned char *f, int len); /* a frame's DSCP (IPv4/IPv6 behind Ethernet, one 802.1Q tag), else 0 */
void qos_run(ns_t now);          /* every direction with a class queue: the serialisation starts up to now */
ns_t qos_next_wake(void);        /* the next serialisation start of a class queue, or INT64_MAX */
void print_dir(const char *name, const struct dir *d); /* control.c: one direction's counters (JSON) */

/* iface.c: interfaces (-1 on failure) */
int if_setup(const char *name, int *ifindex);  /* index, offloads off, up */
int open_pkt_socket(int ifindex);              /* non-blocking AF_PACKET socket with rx timestamps */
/* A packet arriving at direction d at t_arr (CLOCK_MONOTONIC ns): the model (loss, serialiser, delay). */
void dir_enqueue(struct dir *d, const unsigned char *data, int len, ns_t t_arr);

/* cell.c: links inside the relay. Each returns NULL on success, else a static error text. */
const char *cell_backhaul(struct link *cell, struct link *n3);
const char *cell_join(struct link *ue, struct link *cell, const unsigned char mac[6]);
void cell_leave(struct link *ue);
void cell_unwire(struct link *L);       /* before L is deleted: nothing may lead into it */
/* A packet leaving d (out_fd < 0) at dep into what d is wired to; 0: nothing is (dropped_unwired). */
int cell_forward(struct dir *d, const unsigned char *data, int len, ns_t dep);
/* The DSCP UE radio link ue's uplink packets get as they enter its cell (-1: left as they are). */
void cell_n3_dscp(struct link *ue, int dscp);

/* relay.c: a packet put into direction d (towards the inside) to leave at dep, kept in dep order
 * (not FIFO): the NR cell's output (nrcell.c). */
void dir_insert_at(struct dir *d, const unsigned char *data, int len, ns_t dep);
double rng_uniform(void);  /* [0, 1) from the relay's seeded generator */

/* nrcell.c: the NR slot-level cell model (its own comment says what it models) */
#define NR_MAX_SLICES 8
/* "nr CELL WHAT ..." after CELL: configure cell L (NULL on success, else a static error text). */
const char *nr_config(struct link *L, char **w, int nw);
const char *nr_ue_slice(struct link *ue, int slice);  /* the UE's slice index in its NR cell */
const char *nr_interrupt(struct link *ue, ns_t from, ns_t until); /* a handover's interruption */
int nr_on(const struct link *cell);                   /* cell has the NR model switched on */
void nr_arrive(struct link *cell, struct link *ue, int dir, const unsigned char *data, int len, ns_t t);
void nr_run(ns_t now);          /* every NR cell: process the slots that have started by now */
ns_t nr_next_wake(void);        /* start of the next slot an NR cell has work in, or INT64_MAX */
void nr_joined(struct link *ue, ns_t t); /* after ue->cell changed: its buffers go with it */
void nr_free(struct link *L);   /* L (a cell or a UE link) is being deleted */
void nr_print_stats(const struct link *cell); /* JSON object of the cell's per-slice counters */
/* nrcell.c calls this for every packet it is done with: delivered at dep, or dropped: dep -1 all
 * HARQ transmissions failed, -2 the buffer was full, -3 moved into a cell without the model. */
void nr_deliver(struct link *cell, struct link *ue, int dir, const unsigned char *data, int len, ns_t arr, ns_t dep);

/* control.c: the stdin/stdout control channel */
int ctl_input(void);         /* read what stdin has, answer every complete line; -1: quit or EOF */

#endif
