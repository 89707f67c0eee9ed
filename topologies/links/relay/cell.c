/* factorysat link relay: cells, links whose ends stay inside the relay.
 *
 * A link end named "-" has no interface: it is inside the relay. A cell is a link with both ends
 * inside; its uplink direction is the cell's shared uplink capacity and its downlink the shared
 * downlink capacity (rate, queue; delay and loss work too). UE radio links (B end inside) join a
 * cell; the cell's backhaul (N3) link has its A end inside and its B end on the UPF's port:
 *
 *     UE --radio uplink--> cell uplink --> N3 uplink --> UPF
 *     UPF --> N3 downlink --> cell downlink --(destination MAC)--> radio downlink --> UE
 *
 * A packet leaving a direction towards the inside enters the next one with its scheduled departure
 * time as arrival time, so a chain adds no wake-up latency of its own: only the last direction,
 * which sends on an interface, is late by however late the relay runs. The cell's downlink
 * delivers a frame to the UE whose address it carries, a broadcast/multicast frame to every UE of
 * the cell. A UE joining another cell leaves its cell first: a move between cells. Until the UPF
 * sends the moved UE's traffic down the new cell's backhaul (the controller's path switch), the old
 * cell forwards frames for it to its new cell, as a source gNB forwards downlink data to the target
 * over Xn during a handover (3GPP TS 38.300 section 9.2.3.2); counted in the old cell's
 * xn_forwarded. Anything else (no UE with that address in any cell, no backhaul, a UE in no cell)
 * is counted in dropped_unwired.
 *
 * N3 marking: a gNB carries each QoS flow's uplink over N3 with the transport DSCP its QoS maps to
 * (TS 38.415 / TS 29.281 GTP-U over IP; the DSCP per 5QI is the operator's choice). Here a UE radio
 * link may be given a DSCP (n3dscp): its uplink IPv4 packets get it (ECN bits kept, header checksum
 * recomputed) as they enter the cell, so DSCP queues on the backhaul see each slice's mark.
 */
#include "relay.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char msg[160];

static int inside_a(const struct link *L) { return L->fda < 0; }
static int inside_b(const struct link *L) { return L->fdb < 0; }
static int is_cell(const struct link *L) { return inside_a(L) && inside_b(L); }

const char *cell_backhaul(struct link *cell, struct link *n3) {
    if (!is_cell(cell)) snprintf(msg, sizeof msg, "link %d is not a cell (both ends must be -)", cell->id);
    else if (!inside_a(n3) || inside_b(n3))
        snprintf(msg, sizeof msg, "link %d cannot be a backhaul (its A end must be -, its B end an interface)", n3->id);
    else if (cell->n3) snprintf(msg, sizeof msg, "cell %d has backhaul %d already", cell->id, cell->n3->id);
    else if (n3->n3_of) snprintf(msg, sizeof msg, "link %d is the backhaul of cell %d already", n3->id, n3->n3_of->id);
    else {
        cell->n3 = n3; n3->n3_of = cell;
        cell->d[UPLINK].next = &n3->d[UPLINK];
        n3->d[DOWNLINK].next = &cell->d[DOWNLINK];
        return NULL;
    }
    return msg;
}

const char *cell_join(struct link *ue, struct link *cell, const unsigned char mac[6]) {
    if (!is_cell(cell)) { snprintf(msg, sizeof msg, "link %d is not a cell (both ends must be -)", cell->id); return msg; }
    if (inside_a(ue) || !inside_b(ue)) {
        snprintf(msg, sizeof msg, "link %d cannot join a cell (its A end must be an interface, its B end -)", ue->id);
        return msg;
    }
    if (cell->nmembers == cell->cap_members) {
        int nc = cell->cap_members ? cell->cap_members * 2 : 16;
        struct link **nm = realloc(cell->members, (size_t)nc * sizeof *nm);
        if (!nm) return "out of memory";
        cell->members = nm; cell->cap_members = nc;
    }
    if (ue->cell) cell_leave(ue);  /* a move: the UE's queued packets stay with it */
    cell->members[cell->nmembers++] = ue;
    ue->cell = cell; memcpy(ue->mac, mac, 6);
    ue->d[UPLINK].next = &cell->d[UPLINK];
    nr_joined(ue, mono_ns());      /* and so do its buffers in an NR cell (nrcell.c) */
    return NULL;
}

void cell_leave(struct link *ue) {
    struct link *cell = ue->cell;
    if (!cell) return;
    for (int i = 0; i < cell->nmembers; i++)
        if (cell->members[i] == ue) { cell->members[i] = cell->members[--cell->nmembers]; break; }
    ue->cell = NULL; ue->d[UPLINK].next = NULL;
}

void cell_unwire(struct link *L) {
    cell_leave(L);
    for (int i = 0; i < L->nmembers; i++) { L->members[i]->cell = NULL; L->members[i]->d[UPLINK].next = NULL; }
    free(L->members); L->members = NULL; L->nmembers = L->cap_members = 0;
    if (L->n3) { L->n3->n3_of = NULL; L->n3->d[DOWNLINK].next = NULL; L->n3 = NULL; }
    if (L->n3_of) { L->n3_of->n3 = NULL; L->n3_of->d[UPLINK].next = NULL; L->n3_of = NULL; }
}

/* A downlink frame entering cell L at t: an NR cell schedules a frame for one of its UEs (nrcell.c);
 * everything else goes through the cell's downlink direction (by address, below). */
static void enter_downlink(struct link *L, const unsigned char *data, int len, ns_t t) {
    if (!nr_on(L)) { dir_enqueue(&L->d[DOWNLINK], data, len, t); return; }
    if (len >= 6 && !(data[0] & 1))
        for (int i = 0; i < L->nmembers; i++)
            if (!memcmp(L->members[i]->mac, data, 6)) { nr_arrive(L, L->members[i], DOWNLINK, data, len, t); return; }
    /* group frames and frames for UEs elsewhere pass at once; the direction holds the model's output
     * in departure order, so they are put in order too (a FIFO append would wait behind it) */
    struct dir *d = &L->d[DOWNLINK];
    d->rx++; d->rx_bytes += len;
    dir_insert_at(d, data, len, t);
}

void nr_deliver(struct link *cell, struct link *ue, int dir, const unsigned char *data, int len, ns_t arr, ns_t dep) {
    struct dir *d = &cell->d[dir];
    (void)ue; (void)arr;
    d->rx++; d->rx_bytes += len;
    if (dep == -1) d->drop_loss++;        /* every HARQ transmission failed */
    else if (dep < 0) d->drop_queue++;    /* the UE's buffer was full (or moved into a fixed cell) */
    else dir_insert_at(d, data, len, dep);
}

void cell_n3_dscp(struct link *ue, int dscp) { ue->n3_dscp = dscp < 0 ? 0 : dscp + 1; }

/* data with its IPv4 DSCP set to dscp (Ethernet II, one optional 802.1Q tag), in a static copy;
 * anything else (IPv6, ARP, a short frame) unchanged. */
static const unsigned char *n3_mark(const unsigned char *data, int len, int dscp) {
    static unsigned char buf[9232];
    int ip = 14;
    if (len >= 18 && data[12] == 0x81 && data[13] == 0x00) ip = 18;
    if (len > (int)sizeof buf || len < ip + 20 || data[ip - 2] != 0x08 || data[ip - 1] != 0x00) return data;
    int ihl = (data[ip] & 0x0f) * 4;
    if ((data[ip] >> 4) != 4 || ihl < 20 || len < ip + ihl) return data;
    memcpy(buf, data, len);
    buf[ip + 1] = (unsigned char)((dscp << 2) | (buf[ip + 1] & 3));
    buf[ip + 10] = buf[ip + 11] = 0;
    unsigned sum = 0;
    for (int i = 0; i < ihl; i += 2) sum += (unsigned)(buf[ip + i] << 8 | buf[ip + i + 1]);
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    sum = ~sum & 0xffff;
    buf[ip + 10] = (unsigned char)(sum >> 8); buf[ip + 11] = (unsigned char)sum;
    return buf;
}

int cell_forward(struct dir *d, const unsigned char *data, int len, ns_t dep) {
    struct link *L = d->owner;
    if (L->n3_dscp && d == &L->d[UPLINK] && L->cell) data = n3_mark(data, len, L->n3_dscp - 1);
    if (d == &L->d[DOWNLINK] && is_cell(L)) {
        int group = len >= 6 && (data[0] & 1), hit = 0;
        for (int i = 0; i < L->nmembers; i++) {
            struct link *ue = L->members[i];
            if (group || (len >= 6 && !memcmp(ue->mac, data, 6))) {
                dir_enqueue(&ue->d[DOWNLINK], data, len, dep);
                hit = 1;
                if (!group) break;
            }
        }
        if (!hit && !group) { /* a UE that moved away: Xn forwarding to its cell now */
            int n; struct link *all = links_table(&n);
            for (int i = 0; i < n; i++) {
                struct link *ue = &all[i];
                if (ue->used && ue->cell && ue->cell != L && !memcmp(ue->mac, data, 6)) {
                    enter_downlink(ue->cell, data, len, dep);
                    d->xn_forwarded++;
                    return 1;
                }
            }
        }
        return hit;
    }
    if (!d->next) return 0;
    struct link *N = d->next->owner;
    if (is_cell(N) && d->next == &N->d[DOWNLINK]) enter_downlink(N, data, len, dep); /* from the backhaul */
    else if (nr_on(N) && d->next == &N->d[UPLINK] && L->cell == N) nr_arrive(N, L, UPLINK, data, len, dep);
    else dir_enqueue(d->next, data, len, dep);
    return 1;
}
