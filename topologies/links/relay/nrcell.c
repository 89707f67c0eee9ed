/* factorysat link relay: the NR cell model, slot by slot, at packet level (no PHY).
 *
 * A cell with the model on (nr_config "on") no longer serves its UEs through a rate and a typed-in
 * delay: every packet a UE sends, and every packet the UPF sends to a UE, waits in that UE's buffer
 * (uplink at the UE, downlink at the gNB) until the cell's scheduler gives it resource blocks in a
 * slot of its direction. The parameters come from topologies/nr (their sources are there); what
 * happens per slot k of the cell's TDD grid (slot_ns = 1 ms / 2^mu, 14 symbols; pattern letters
 * D, U and S, the S slot with s_dl downlink symbols first and s_ul uplink symbols last, TS 38.213
 * section 11.1):
 *
 *   1. PRBs reserved in this slot first: HARQ retransmissions and configured-grant occasions,
 *      charged to their slice.
 *   2. Uplink: a UE whose first grant (after its scheduling request) falls in this slot sends up to
 *      first_grant_bytes; a UE of a configured-grant slice at its occasion sends up to cg_bytes
 *      (every cg_period-th full uplink (U) slot, repeated cg_reps times); both carry a buffer
 *      status report.
 *   3. The rest of the PRBs are shared by the slices as in TS 28.541 RRMPolicyRatio: each slice's
 *      dedicated PRBs first (idle ones are wasted), then each slice's minimum above it, higher
 *      priority first, then what is left up to each slice's maximum, higher priority first and
 *      equal priorities shared evenly; inside a slice round-robin or proportional fair.
 *      Demand: downlink, the bytes that reached the gNB gnb_proc_ns before the slot; uplink, what
 *      the gNB knows from buffer status reports that have had time to turn into a grant.
 *   4. Each transport block fails with the slice's block error rate; a failed block is sent again
 *      one HARQ round later on the grid (downlink: ACK/NACK in the first uplink slot >= k + k1,
 *      then gNB processing, then the next downlink slot; uplink: gNB decode and processing, a new
 *      grant in the next downlink slot, the retransmission k2 slots later or more), with the same
 *      PRBs reserved; after harq_max transmissions its packets are lost.
 *   A packet is delivered when its last byte has been decoded: the end of its direction's symbols in
 *   the slot of its last transmission, plus the receiver's decode time and the implementation offset
 *   (dl_extra_ns / ul_extra_ns), in order per UE and direction (PDCP in-order delivery).
 *   Uplink with a dynamic grant: a UE with data the gNB does not know of sends a scheduling request
 *   at the next SR occasion (slot with uplink symbols, (k - sr_offset) mod sr_period == 0), the gNB
 *   answers gnb_proc_ns after it in the next downlink slot with a grant for an uplink slot >= k2
 *   slots later (TS 38.213 section 9.2.4, TS 38.214 section 6.1.2.1).
 * A running cell's slice shares, priorities, BLERs and configured grants change with another "slice"
 * request (a RAN controller's policy change, as O-RAN's near-RT RIC sets RRMPolicyRatio over E2): it
 * applies from the next slot processed; buffers, HARQ processes in flight and counters are kept.
 * A handover interrupts a UE (nr_interrupt): in [from, until) it is neither scheduled nor sends a
 * scheduling request; its buffers wait (lossless handover with data forwarding, TS 38.300 9.2.3.2).
 * Left out: the PHY (no channel, MCS fixed per cell), mini-slots, the UE's N2 preparation cut-off
 * (data that reaches the UE before the slot starts goes into it), DRX, RLC retransmissions.
 * Slots are counted from CLOCK_MONOTONIC 0, so every cell of a relay shares one slot grid. The model
 * is driven by nr_arrive and nr_run only (no sockets): nrsim.c runs it on a list of arrivals.
 */
#include "relay.h"
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NR_MAX_CELLS 256
#define NR_RING 4096             /* slots ahead a reservation can be made in */
#define NR_PATTERN_MAX 80
#define NR_GUARD_NS 100000       /* a slot is processed this long after its start: its arrivals are read */
#define NR_HIST_BIN_NS 50000     /* model delay histogram: 50 us bins ... */
#define NR_HIST_BINS 2000        /* ... up to 100 ms, then one overflow bin */

struct nrpkt { struct nrpkt *next; ns_t arr, done; int len, left, dropped; unsigned char data[]; };
struct nrq { struct nrpkt *head, *tail; long long bytes; int n; };

struct nr_ue {
    int slice;
    struct nrq q[2];             /* uplink: at the UE; downlink: at the gNB */
    long long reported;          /* uplink bytes the gNB knows of and may grant now */
    long long pending; long long pending_slot; /* a report not yet turned into grants, from slot */
    long long first_grant_slot;  /* the PUSCH slot of the grant answering a scheduling request, or -1 */
    ns_t last_done[2];
    ns_t off_from, off_until;    /* a handover's interruption: not scheduled in [from, until) */
    double avg_bytes[2];         /* proportional fair: served bytes per slot, smoothed */
    struct link *cell;           /* the NR cell whose queues these are */
};

struct nr_slice {
    int ded, min, max, prio;     /* PRBs */
    double bler[2];
    int cg_period, cg_bytes, cg_reps; /* configured grant (uplink): every cg_period-th U slot */
    unsigned long long in[2], out[2], out_bytes[2], drop_harq[2], drop_buffer[2], tbs[2], retx[2], srs;
    unsigned long long moved_in[2], moved_out[2]; /* buffered packets that came / left with a UE's move */
    unsigned long long changes;  /* share changes while the cell ran (nr CELL slice after on) */
    unsigned long long prb[2], hist[2][NR_HIST_BINS + 1];
};

struct nrcell {
    int on, have_grid, have_timing;
    int mu, plen, s_dl, s_gap, s_ul, prbs;
    char pattern[NR_PATTERN_MAX + 1];
    double bits[2];              /* per PRB per symbol, uplink / downlink */
    ns_t slot_ns, sym_ns;
    int sr_period, sr_offset, k1, k2, harq_max, pf;
    ns_t gnb_proc_ns, ue_decode_ns, gnb_decode_ns, ul_extra_ns, dl_extra_ns;
    long long first_grant_bytes, buffer_bytes;
    int nslices; struct nr_slice sl[NR_MAX_SLICES];
    int rr[NR_MAX_SLICES][2];
    long long next_slot; long long queued;
    unsigned long long slots[2], prb_offered[2], prb_idle_dedicated[2];
    int resv[NR_RING][2][NR_MAX_SLICES]; long long resv_slot[NR_RING];
};

static struct link *cells[NR_MAX_CELLS]; static int ncells;
static char msg[200];

static long long ceil_div(ns_t a, ns_t b) { return a <= 0 ? a / b : (a + b - 1) / b; }

/* ---- the grid ---- */
static int nsym(const struct nrcell *C, long long k, int dir) {
    char c = C->pattern[k % C->plen];
    if (c == 'D') return dir == DOWNLINK ? 14 : 0;
    if (c == 'U') return dir == UPLINK ? 14 : 0;
    return dir == DOWNLINK ? C->s_dl : C->s_ul;
}
static ns_t slot_start(const struct nrcell *C, long long k) { return (ns_t)k * C->slot_ns; }
/* when the direction's symbols of slot k end (downlink symbols come first in an S slot) */
static ns_t tx_end(const struct nrcell *C, long long k, int dir) {
    return slot_start(C, k) + (dir == DOWNLINK ? nsym(C, k, DOWNLINK) : 14) * C->sym_ns;
}
static long long next_with(const struct nrcell *C, long long k, int dir) {
    while (!nsym(C, k, dir)) k++;
    return k;
}
static long long slot_at_or_after(const struct nrcell *C, ns_t t) { return ceil_div(t, C->slot_ns); }
/* The first uplink slot a grant decided after time t can use: grant in the next downlink slot
 * gnb_proc_ns later, PUSCH k2 slots or more after it. */
static long long ul_grant_slot(const struct nrcell *C, ns_t t) {
    long long g = next_with(C, slot_at_or_after(C, t + C->gnb_proc_ns), DOWNLINK);
    return next_with(C, g + C->k2, UPLINK);
}
/* the slot of the next HARQ transmission of a block sent in slot k */
static long long harq_next(const struct nrcell *C, long long k, int dir) {
    if (dir == UPLINK) return ul_grant_slot(C, tx_end(C, k, UPLINK) + C->gnb_decode_ns);
    long long a = next_with(C, k + C->k1, UPLINK); /* the UE's ACK/NACK */
    return next_with(C, slot_at_or_after(C, tx_end(C, a, UPLINK) + C->gnb_proc_ns), DOWNLINK);
}
static long long sr_slot(const struct nrcell *C, ns_t t) {
    long long k = slot_at_or_after(C, t);
    for (long long i = 0; i < (long long)C->sr_period * C->plen + C->plen; i++, k++)
        if (nsym(C, k, UPLINK) && ((k - C->sr_offset) % C->sr_period + C->sr_period) % C->sr_period == 0) return k;
    return -1;
}
static long long u_index(const struct nrcell *C, long long k) { /* full uplink (U) slots before k */
    long long per = 0, pre = 0;
    for (int i = 0; i < C->plen; i++) if (C->pattern[i] == 'U') { per++; if (i < k % C->plen) pre++; }
    return k / C->plen * per + pre;
}
static long long bytes_of(const struct nrcell *C, int prbs, long long k, int dir) {
    return (long long)(prbs * C->bits[dir] * nsym(C, k, dir) / 8.0);
}
static int prbs_for(const struct nrcell *C, long long bytes, long long k, int dir) {
    double per = C->bits[dir] * nsym(C, k, dir) / 8.0;
    if (bytes <= 0 || per <= 0) return 0;
    double n = bytes / per;
    return n >= C->prbs ? C->prbs : (int)n + ((double)(int)n < n);
}

/* ---- reservations (HARQ retransmissions, configured grants) ---- */
static int *resv_of(struct nrcell *C, long long k) {
    int i = (int)(k % NR_RING);
    if (C->resv_slot[i] != k) { memset(C->resv[i], 0, sizeof C->resv[i]); C->resv_slot[i] = k; }
    return &C->resv[i][0][0];
}
static void reserve(struct nrcell *C, long long k, int dir, int s, int n) {
    if (k >= C->next_slot && k - C->next_slot < NR_RING) resv_of(C, k)[dir * NR_MAX_SLICES + s] += n;
}

/* ---- queues ---- */
static void q_push(struct nrq *q, struct nrpkt *p) {
    p->next = NULL;
    if (q->tail) q->tail->next = p; else q->head = p;
    q->tail = p; q->bytes += p->left; q->n++;
}
static struct nrpkt *q_pop(struct nrq *q) {
    struct nrpkt *p = q->head;
    q->head = p->next; if (!q->head) q->tail = NULL;
    q->n--;
    return p;
}
/* bytes of q that arrived by cutoff, counting no further than cap */
static long long q_ready(const struct nrq *q, ns_t cutoff, long long cap) {
    long long b = 0;
    for (const struct nrpkt *p = q->head; p && p->arr <= cutoff && b < cap; p = p->next) b += p->left;
    return b;
}

static void finish(struct link *cell, struct link *ue, int dir, struct nrpkt *p) {
    struct nrcell *C = cell->nr; struct nr_ue *u = ue->nru; struct nr_slice *S = &C->sl[u->slice];
    C->queued--;
    if (p->dropped) { S->drop_harq[dir]++; nr_deliver(cell, ue, dir, p->data, p->len, p->arr, -1); }
    else {
        ns_t dep = p->done > u->last_done[dir] ? p->done : u->last_done[dir];
        u->last_done[dir] = dep;
        long long bin = (dep - p->arr) / NR_HIST_BIN_NS;
        S->hist[dir][bin < 0 ? 0 : bin > NR_HIST_BINS ? NR_HIST_BINS : bin]++;
        S->out[dir]++; S->out_bytes[dir] += p->len;
        nr_deliver(cell, ue, dir, p->data, p->len, p->arr, dep);
    }
    free(p);
}

/* Send one transport block of `bytes` on `nprb` PRBs for ue in slot k: HARQ outcome, reservations of
 * its retransmissions, and the packets it completes. `reps`: blind repetitions (configured grant). */
static void send_tb(struct link *cell, struct link *ue, int dir, long long k, int nprb, long long bytes,
                    ns_t cutoff, int reps) {
    struct nrcell *C = cell->nr; struct nr_ue *u = ue->nru; int s = u->slice; struct nr_slice *S = &C->sl[s];
    S->tbs[dir]++;
    for (long long r = 1, at = k; r < reps; r++) { at = next_with(C, at + 1, dir); reserve(C, at, dir, s, nprb); }
    /* the repetitions of the first transmission (all sent): decoded at the first good one */
    long long last = k; int ok = 0, tx = 1;
    for (int r = 0; r < reps && !ok; r++) {
        if (r) last = next_with(C, last + 1, dir);
        ok = rng_uniform() >= S->bler[dir];
    }
    while (!ok && tx < C->harq_max) {
        last = harq_next(C, last, dir); reserve(C, last, dir, s, nprb);
        tx++; S->retx[dir]++;
        ok = rng_uniform() >= S->bler[dir];
    }
    ns_t done = tx_end(C, last, dir) + (dir == DOWNLINK ? C->ue_decode_ns + C->dl_extra_ns
                                                         : C->gnb_decode_ns + C->ul_extra_ns);
    struct nrq *q = &u->q[dir];
    while (bytes > 0 && q->head && q->head->arr <= cutoff) {
        struct nrpkt *p = q->head;
        long long x = p->left < bytes ? p->left : bytes;
        p->left -= (int)x; bytes -= x; q->bytes -= x;
        if (done > p->done) p->done = done;
        if (!ok) p->dropped = 1;
        if (p->left == 0) finish(cell, ue, dir, q_pop(q));
    }
}

/* ---- scheduling requests and buffer status reports (uplink) ---- */
static int interrupted(const struct nr_ue *u, ns_t t) { return t >= u->off_from && t < u->off_until; }

static void maybe_request(struct link *cell, struct link *ue, ns_t t) {
    struct nrcell *C = cell->nr; struct nr_ue *u = ue->nru;
    if (!u->q[UPLINK].n || u->reported || u->pending || u->first_grant_slot >= 0 || C->sl[u->slice].cg_period) return;
    if (interrupted(u, t)) t = u->off_until;  /* no request during a handover's interruption */
    long long j = sr_slot(C, t);
    if (j < 0) return;
    C->sl[u->slice].srs++;
    u->first_grant_slot = ul_grant_slot(C, tx_end(C, j, UPLINK) + C->gnb_decode_ns);
}
/* the report a UE sends with its PUSCH in slot k: everything buffered by the slot's start */
static void report(struct nrcell *C, struct nr_ue *u, long long k) {
    long long known = u->reported + u->pending;
    long long now_buf = q_ready(&u->q[UPLINK], slot_start(C, k), LLONG_MAX);
    if (now_buf > known) {
        if (!u->pending) u->pending_slot = ul_grant_slot(C, tx_end(C, k, UPLINK) + C->gnb_decode_ns);
        u->pending += now_buf - known;
    }
}

/* ---- slicing (TS 28.541 RRMPolicyRatio): PRBs per slice for this slot ---- */
static void share(const struct nrcell *C, const int *used, const int *want, int *give) {
    int n = C->nslices, free_prb = C->prbs, left[NR_MAX_SLICES], total[NR_MAX_SLICES];
    for (int s = 0; s < n; s++) {
        total[s] = used[s];
        free_prb -= used[s] > C->sl[s].ded ? used[s] : C->sl[s].ded;
        int g = C->sl[s].ded - used[s]; g = g < 0 ? 0 : g < want[s] ? g : want[s];
        give[s] = g; total[s] += g; left[s] = want[s] - g;
    }
    if (free_prb < 0) free_prb = 0;
    int order[NR_MAX_SLICES];
    for (int s = 0; s < n; s++) order[s] = s;
    for (int i = 1; i < n; i++) /* by priority, higher first; stable */
        for (int j = i; j > 0 && C->sl[order[j]].prio > C->sl[order[j - 1]].prio; j--) {
            int t = order[j]; order[j] = order[j - 1]; order[j - 1] = t;
        }
    for (int i = 0; i < n; i++) { /* minimums above the dedicated share */
        int s = order[i], base = total[s] > C->sl[s].ded ? total[s] : C->sl[s].ded;
        int g = C->sl[s].min - base; g = g < 0 ? 0 : g;
        if (g > left[s]) g = left[s];
        if (g > free_prb) g = free_prb;
        give[s] += g; total[s] += g; left[s] -= g; free_prb -= g;
    }
    for (int i = 0; i < n && free_prb > 0;) { /* the rest up to each maximum, equal priorities evenly */
        int j = i;
        while (j < n && C->sl[order[j]].prio == C->sl[order[i]].prio) j++;
        for (;;) {
            int m = 0;
            for (int x = i; x < j; x++) { int s = order[x]; if (left[s] > 0 && total[s] < C->sl[s].max) m++; }
            if (!m || !free_prb) break;
            int each = free_prb / m; if (each < 1) each = 1;
            for (int x = i; x < j && free_prb > 0; x++) {
                int s = order[x], g = C->sl[s].max - total[s];
                if (g > left[s]) g = left[s];
                if (g > each) g = each;
                if (g > free_prb) g = free_prb;
                if (g <= 0) continue;
                give[s] += g; total[s] += g; left[s] -= g; free_prb -= g;
            }
        }
        i = j;
    }
}

/* ---- one slot, one direction ---- */
static void run_dir(struct link *cell, long long k, int dir) {
    struct nrcell *C = cell->nr;
    int ns = C->nslices, used[NR_MAX_SLICES], want[NR_MAX_SLICES], give[NR_MAX_SLICES];
    int *rs = resv_of(C, k) + dir * NR_MAX_SLICES;
    ns_t cutoff = dir == DOWNLINK ? slot_start(C, k) - C->gnb_proc_ns : slot_start(C, k);
    long long cap = bytes_of(C, C->prbs, k, dir);
    for (int s = 0; s < ns; s++) used[s] = rs[s];
    C->slots[dir]++; C->prb_offered[dir] += (unsigned long long)C->prbs;
    if (dir == UPLINK) { /* first grants and configured-grant occasions */
        long long ui = -1;
        for (int i = 0; i < cell->nmembers; i++) {
            struct link *ue = cell->members[i]; struct nr_ue *u = ue->nru; struct nr_slice *S;
            if (!u || interrupted(u, slot_start(C, k))) continue;
            S = &C->sl[u->slice];
            if (u->pending && u->pending_slot <= k) { u->reported += u->pending; u->pending = 0; }
            long long b = 0; int n = 0;
            if (u->first_grant_slot >= 0 && u->first_grant_slot <= k) {
                u->first_grant_slot = -1;
                b = C->first_grant_bytes; n = prbs_for(C, b, k, dir);
            } else if (S->cg_period && C->pattern[k % C->plen] == 'U') { /* occasions on U slots */
                if (ui < 0) ui = u_index(C, k);
                if ((ui + i) % S->cg_period == 0) { b = S->cg_bytes; n = prbs_for(C, b, k, dir); }
            }
            if (!n) continue;
            if (n > C->prbs) n = C->prbs;
            used[u->slice] += n;
            long long ready = q_ready(&u->q[UPLINK], cutoff, b);
            long long sent = ready < b ? ready : b;
            if (u->reported > sent) u->reported -= sent; else u->reported = 0;
            if (sent) send_tb(cell, ue, dir, k, n, sent, cutoff, S->cg_period ? S->cg_reps : 1);
            report(C, u, k);
        }
    }
    for (int s = 0; s < ns; s++) want[s] = 0;
    long long ready_of[cell->nmembers > 0 ? cell->nmembers : 1];
    for (int i = 0; i < cell->nmembers; i++) {
        struct nr_ue *u = cell->members[i]->nru; ready_of[i] = 0;
        if (!u || !u->q[dir].n || interrupted(u, slot_start(C, k))) continue;
        long long r = q_ready(&u->q[dir], cutoff, cap);
        if (dir == UPLINK && r > u->reported) r = u->reported;
        ready_of[i] = r;
        if (r) { int p = prbs_for(C, r, k, dir); want[u->slice] = want[u->slice] + p > C->prbs ? C->prbs : want[u->slice] + p; }
    }
    share(C, used, want, give);
    for (int s = 0; s < ns; s++) {
        int idle = C->sl[s].ded - used[s] - give[s];
        if (idle > 0) C->prb_idle_dedicated[dir] += (unsigned long long)idle;
        C->sl[s].prb[dir] += (unsigned long long)(used[s] + give[s]);
        if (!give[s]) continue;
        int left = give[s], m = cell->nmembers, start = C->rr[s][dir] % (m ? m : 1), served_last = -1;
        int order[m > 0 ? m : 1], no = 0;
        for (int x = 0; x < m; x++) {
            int i = (start + x) % m; struct nr_ue *u = cell->members[i]->nru;
            if (u && u->slice == s && ready_of[i] > 0) order[no++] = i;
        }
        if (C->pf) /* least served first (equal channels: proportional fair reduces to this) */
            for (int a = 1; a < no; a++)
                for (int b = a; b > 0 && cell->members[order[b]]->nru->avg_bytes[dir]
                                         < cell->members[order[b - 1]]->nru->avg_bytes[dir]; b--) {
                    int t = order[b]; order[b] = order[b - 1]; order[b - 1] = t;
                }
        for (int x = 0; x < no && left > 0; x++) {
            int i = order[x]; struct link *ue = cell->members[i]; struct nr_ue *u = ue->nru;
            int n = prbs_for(C, ready_of[i], k, dir); if (n > left) n = left;
            long long b = bytes_of(C, n, k, dir); if (b > ready_of[i]) b = ready_of[i];
            if (b <= 0) continue;
            left -= n; served_last = i;
            if (dir == UPLINK) u->reported -= b;
            send_tb(cell, ue, dir, k, n, b, cutoff, 1);
            u->avg_bytes[dir] += b;
            if (dir == UPLINK) report(C, u, k);
        }
        if (served_last >= 0) C->rr[s][dir] = served_last + 1;
    }
    for (int i = 0; i < cell->nmembers; i++) { /* smoothing of served bytes (proportional fair) */
        struct nr_ue *u = cell->members[i]->nru;
        if (u) u->avg_bytes[dir] *= 0.99;
        if (u && dir == UPLINK) maybe_request(cell, cell->members[i], slot_start(C, k));
    }
}

static void run_slot(struct link *cell, long long k) {
    struct nrcell *C = cell->nr;
    if (nsym(C, k, DOWNLINK)) run_dir(cell, k, DOWNLINK);
    if (nsym(C, k, UPLINK)) run_dir(cell, k, UPLINK);
}

/* ---- entry points ---- */
int nr_on(const struct link *cell) { return cell && cell->nr && cell->nr->on; }

static struct nr_ue *ue_state(struct link *ue) {
    if (!ue->nru) { ue->nru = calloc(1, sizeof *ue->nru); if (ue->nru) ue->nru->first_grant_slot = -1; }
    return ue->nru;
}

void nr_arrive(struct link *cell, struct link *ue, int dir, const unsigned char *data, int len, ns_t t) {
    struct nrcell *C = cell->nr; struct nr_ue *u = ue_state(ue);
    if (!u) { nr_deliver(cell, ue, dir, data, len, t, -2); return; }
    if (u->cell != cell) { /* joined this cell: a new scheduling request, its buffers come along */
        u->cell = cell; u->reported = u->pending = 0; u->first_grant_slot = -1;
        if (u->slice >= C->nslices) u->slice = 0;
    }
    struct nr_slice *S = &C->sl[u->slice];
    S->in[dir]++;
    if (u->q[dir].bytes + len > C->buffer_bytes) { S->drop_buffer[dir]++; nr_deliver(cell, ue, dir, data, len, t, -2); return; }
    struct nrpkt *p = malloc(sizeof *p + (size_t)len);
    if (!p) { S->drop_buffer[dir]++; nr_deliver(cell, ue, dir, data, len, t, -2); return; }
    p->arr = t; p->done = 0; p->len = p->left = len; p->dropped = 0; memcpy(p->data, data, (size_t)len);
    if (!C->queued) { /* idle until now: nothing to catch up on */
        long long k = t / C->slot_ns;
        if (k > C->next_slot) C->next_slot = k;
    }
    q_push(&u->q[dir], p); C->queued++;
    if (dir == UPLINK) maybe_request(cell, ue, t);
}

void nr_run(ns_t now) {
    for (int c = 0; c < ncells; c++) {
        struct link *cell = cells[c]; struct nrcell *C = cell->nr;
        while (C->queued && slot_start(C, C->next_slot) + NR_GUARD_NS <= now) run_slot(cell, C->next_slot++);
        if (!C->queued) { long long k = now / C->slot_ns; if (k > C->next_slot) C->next_slot = k; }
    }
}

ns_t nr_next_wake(void) {
    ns_t w = INT64_MAX;
    for (int c = 0; c < ncells; c++) {
        struct nrcell *C = cells[c]->nr;
        if (C->queued) { ns_t t = slot_start(C, C->next_slot) + NR_GUARD_NS; if (t < w) w = t; }
    }
    return w;
}

void nr_joined(struct link *ue, ns_t t) {
    struct nr_ue *u = ue->nru;
    if (!u || u->cell == ue->cell) return;
    long long n = u->q[UPLINK].n + u->q[DOWNLINK].n;
    if (u->cell && u->cell->nr) { /* they leave the old cell's counts: in = out + drops + buffered */
        struct nr_slice *S = &u->cell->nr->sl[u->slice < u->cell->nr->nslices ? u->slice : 0];
        u->cell->nr->queued -= n;
        for (int d = 0; d < 2; d++) { S->in[d] -= (unsigned long long)u->q[d].n; S->moved_out[d] += (unsigned long long)u->q[d].n; }
    }
    u->cell = NULL; u->reported = u->pending = 0; u->first_grant_slot = -1;
    if (!n) return;
    if (!nr_on(ue->cell)) { /* into a cell without the model: what waited in the buffers is lost */
        for (int d = 0; d < 2; d++)
            while (u->q[d].head) { struct nrpkt *p = q_pop(&u->q[d]); nr_deliver(ue->cell, ue, d, p->data, p->len, p->arr, -3); free(p); }
        u->q[UPLINK].bytes = u->q[DOWNLINK].bytes = 0;
        return;
    }
    struct nrcell *C = ue->cell->nr;
    if (u->slice >= C->nslices) u->slice = 0;
    if (!C->queued) { long long k = t / C->slot_ns; if (k > C->next_slot) C->next_slot = k; }
    u->cell = ue->cell; C->queued += n;
    for (int d = 0; d < 2; d++) { C->sl[u->slice].in[d] += (unsigned long long)u->q[d].n; C->sl[u->slice].moved_in[d] += (unsigned long long)u->q[d].n; }
    maybe_request(ue->cell, ue, t); /* its uplink buffer: a scheduling request in the new cell */
}

const char *nr_interrupt(struct link *ue, ns_t from, ns_t until) {
    if (until < from) return "UNTIL_NS must be >= FROM_NS";
    struct nr_ue *u = ue_state(ue);
    if (!u) return "out of memory";
    u->off_from = from; u->off_until = until;
    return NULL;
}

const char *nr_ue_slice(struct link *ue, int slice) {
    if (slice < 0 || slice >= NR_MAX_SLICES) { snprintf(msg, sizeof msg, "SLICE: got %d; allowed 0..%d", slice, NR_MAX_SLICES - 1); return msg; }
    struct nr_ue *u = ue_state(ue);
    if (!u) return "out of memory";
    u->slice = slice;
    return NULL;
}

static void drop_queues(struct link *ue) {
    struct nr_ue *u = ue->nru;
    for (int d = 0; d < 2; d++)
        while (u->q[d].head) {
            struct nrpkt *p = q_pop(&u->q[d]);
            if (u->cell && u->cell->nr) u->cell->nr->queued--;
            free(p);
        }
    u->q[UPLINK].bytes = u->q[DOWNLINK].bytes = 0;
}

void nr_free(struct link *L) {
    if (L->nru) { drop_queues(L); free(L->nru); L->nru = NULL; }
    if (L->nr) {
        for (int i = 0; i < L->nmembers; i++) if (L->members[i]->nru && L->members[i]->nru->cell == L) {
            drop_queues(L->members[i]); L->members[i]->nru->cell = NULL;
        }
        for (int c = 0; c < ncells; c++) if (cells[c] == L) { cells[c] = cells[--ncells]; break; }
        free(L->nr); L->nr = NULL;
    }
}

/* ---- configuration: grid | timing | slice | on (numbers checked for range here; the Python side
 * (topologies/nr) checks them against 3GPP's allowed values and names the scenario field) ---- */
static int num(const char *s, double lo, double hi, double *v) {
    char *end; double x = strtod(s, &end);
    if (end == s || *end || !(x >= lo && x <= hi)) return -1;
    *v = x; return 0;
}

const char *nr_config(struct link *L, char **w, int nw) {
    if (!(L->fda < 0 && L->fdb < 0)) { snprintf(msg, sizeof msg, "link %d is not a cell", L->id); return msg; }
    if (!L->nr && !(L->nr = calloc(1, sizeof *L->nr))) return "out of memory";
    struct nrcell *C = L->nr; double v[16];
    if (C->on && !(nw >= 1 && !strcmp(w[0], "slice")))
        return "the NR model is on already (only 'slice' changes a running cell)";
    if (nw >= 1 && !strcmp(w[0], "grid")) {
        static const double lo[] = {0, 0, 0, 0, 0, 1, 0, 0}, hi[] = {3, 0, 14, 14, 14, 275, 1e5, 1e5};
        if (nw != 9) return "usage: nr CELL grid MU PATTERN S_DL S_GAP S_UL PRBS BITS_UL BITS_DL";
        for (int i = 0; i < 8; i++) if (i != 1 && num(w[1 + i], lo[i], hi[i], &v[i])) {
            snprintf(msg, sizeof msg, "grid: field %d: got %.32s", i + 1, w[1 + i]); return msg;
        }
        size_t n = strlen(w[2]);
        if (n < 1 || n > NR_PATTERN_MAX || strspn(w[2], "DSU") != n) return "grid: PATTERN: letters D, S, U (1..80)";
        if (v[2] + v[3] + v[4] != 14) return "grid: S_DL + S_GAP + S_UL must be 14";
        C->mu = (int)v[0]; strcpy(C->pattern, w[2]); C->plen = (int)n;
        C->s_dl = (int)v[2]; C->s_gap = (int)v[3]; C->s_ul = (int)v[4]; C->prbs = (int)v[5];
        C->bits[UPLINK] = v[6]; C->bits[DOWNLINK] = v[7];
        C->slot_ns = 1000000 >> C->mu; C->sym_ns = C->slot_ns / 14;
        C->have_grid = 1; return NULL;
    }
    if (nw >= 1 && !strcmp(w[0], "timing")) {
        static const double hi[] = {640, 639, 32, 32, 1e8, 1e8, 1e8, 1e9, 1e9, 1e7, 16, 1, 1e10};
        static const double lo[] = {1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1};
        if (nw != 14) return "usage: nr CELL timing SR_PERIOD SR_OFFSET K1 K2 GNB_PROC_NS UE_DECODE_NS GNB_DECODE_NS "
                             "UL_EXTRA_NS DL_EXTRA_NS FIRST_GRANT_BYTES HARQ_MAX PF BUFFER_BYTES";
        for (int i = 0; i < 13; i++) if (num(w[1 + i], lo[i], hi[i], &v[i])) {
            snprintf(msg, sizeof msg, "timing: field %d: got %.32s", i + 1, w[1 + i]); return msg;
        }
        C->sr_period = (int)v[0]; C->sr_offset = (int)v[1]; C->k1 = (int)v[2]; C->k2 = (int)v[3];
        C->gnb_proc_ns = (ns_t)v[4]; C->ue_decode_ns = (ns_t)v[5]; C->gnb_decode_ns = (ns_t)v[6];
        C->ul_extra_ns = (ns_t)v[7]; C->dl_extra_ns = (ns_t)v[8]; C->first_grant_bytes = (long long)v[9];
        C->harq_max = (int)v[10]; C->pf = (int)v[11]; C->buffer_bytes = (long long)v[12];
        C->have_timing = 1; return NULL;
    }
    if (nw >= 1 && !strcmp(w[0], "slice")) {
        static const double hi[] = {NR_MAX_SLICES - 1, 275, 275, 275, 255, 1, 1, 1000, 1e7, 8};
        if (nw != 11) return "usage: nr CELL slice IDX DED MIN MAX PRIO BLER_UL BLER_DL CG_PERIOD CG_BYTES CG_REPS";
        for (int i = 0; i < 10; i++) if (num(w[1 + i], 0, hi[i], &v[i])) {
            snprintf(msg, sizeof msg, "slice: field %d: got %.32s", i + 1, w[1 + i]); return msg;
        }
        if (!(v[2] >= v[1] && v[3] >= v[2])) return "slice: DED <= MIN <= MAX";
        int s = (int)v[0]; struct nr_slice *S = &C->sl[s];
        if (C->on) { /* a running cell (the RAN controller's share change): counters and queues kept */
            if (s >= C->nslices) { snprintf(msg, sizeof msg, "slice: IDX %d: a running cell has slices 0..%d", s, C->nslices - 1); return msg; }
            long long ded = (long long)v[1];
            for (int i = 0; i < C->nslices; i++) if (i != s) ded += C->sl[i].ded;
            if (ded > C->prbs) return "slice: the dedicated PRBs of the slices would exceed the cell's PRBs";
            S->ded = (int)v[1]; S->min = (int)v[2]; S->max = (int)v[3] > C->prbs ? C->prbs : (int)v[3]; S->prio = (int)v[4];
            S->bler[UPLINK] = v[5]; S->bler[DOWNLINK] = v[6];
            S->cg_period = (int)v[7]; S->cg_bytes = (int)v[8]; S->cg_reps = v[9] < 1 ? 1 : (int)v[9];
            S->changes++;
            return NULL;
        }
        memset(S, 0, sizeof *S);
        S->ded = (int)v[1]; S->min = (int)v[2]; S->max = (int)v[3]; S->prio = (int)v[4];
        S->bler[UPLINK] = v[5]; S->bler[DOWNLINK] = v[6];
        S->cg_period = (int)v[7]; S->cg_bytes = (int)v[8]; S->cg_reps = v[9] < 1 ? 1 : (int)v[9];
        if (s >= C->nslices) C->nslices = s + 1;
        return NULL;
    }
    if (nw == 1 && !strcmp(w[0], "on")) {
        if (!C->have_grid || !C->have_timing || !C->nslices) return "on: grid, timing and at least one slice first";
        if (!strchr(C->pattern, 'D') && !(strchr(C->pattern, 'S') && C->s_dl)) return "on: the pattern has no downlink symbols";
        if (!strchr(C->pattern, 'U') && !(strchr(C->pattern, 'S') && C->s_ul)) return "on: the pattern has no uplink symbols";
        if (ncells == NR_MAX_CELLS) return "on: too many NR cells";
        if (sr_slot(C, 0) < 0) return "on: no scheduling-request occasion falls on a slot with uplink symbols";
        long long ded = 0;
        for (int s = 0; s < C->nslices; s++) { ded += C->sl[s].ded; if (C->sl[s].max > C->prbs) C->sl[s].max = C->prbs; }
        if (ded > C->prbs) return "on: the dedicated PRBs of the slices exceed the cell's PRBs";
        for (int i = 0; i < NR_RING; i++) C->resv_slot[i] = -1;
        C->on = 1; cells[ncells++] = L;
        return NULL;
    }
    return "usage: nr CELL grid|timing|slice|on ...";
}

void nr_print_stats(const struct link *cell) {
    const struct nrcell *C = cell->nr;
    printf("{\"slot_ns\":%lld,\"queued\":%lld", (long long)C->slot_ns, C->queued);
    for (int d = 0; d < 2; d++)
        printf(",\"%s\":{\"slots\":%llu,\"prb_offered\":%llu,\"prb_idle_dedicated\":%llu}", DIR_NAME[d],
               C->slots[d], C->prb_offered[d], C->prb_idle_dedicated[d]);
    printf(",\"hist_bin_ns\":%d,\"slices\":[", NR_HIST_BIN_NS);
    for (int s = 0; s < C->nslices; s++) {
        const struct nr_slice *S = &C->sl[s];
        printf("%s{\"srs\":%llu,\"changes\":%llu", s ? "," : "", S->srs, S->changes);
        for (int d = 0; d < 2; d++) {
            printf(",\"%s\":{\"in\":%llu,\"out\":%llu,\"out_bytes\":%llu,\"dropped_harq\":%llu,\"dropped_buffer\":%llu,"
                   "\"tbs\":%llu,\"retx\":%llu,\"prb\":%llu,\"moved_in\":%llu,\"moved_out\":%llu,\"delay_hist\":[",
                   DIR_NAME[d], S->in[d], S->out[d], S->out_bytes[d], S->drop_harq[d], S->drop_buffer[d], S->tbs[d],
                   S->retx[d], S->prb[d], S->moved_in[d], S->moved_out[d]);
            int first = 1;
            for (int b = 0; b <= NR_HIST_BINS; b++)
                if (S->hist[d][b]) { printf(first ? "[%d,%llu]" : ",[%d,%llu]", b, S->hist[d][b]); first = 0; }
            printf("]}");
        }
        printf("}");
    }
    printf("]}");
}
