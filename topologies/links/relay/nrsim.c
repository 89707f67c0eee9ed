/* factorysat NR cell model, run on a list of arrivals with no sockets and no clock: the tests check
 * the relay's scheduler (nrcell.c) against hand-computed cases with it, and the cell benchmark
 * (experiments/bench/cell.py) reports the model's own delays with it.
 *
 * stdin, one per line, arrivals in time order:
 *   seed S                    the generator's seed (HARQ draws)
 *   nr grid|timing|slice|on   the cell's configuration, as the relay's "nr CELL ..." after CELL
 *   ue ID SLICE               a UE in the cell (IDs 1..4000)
 *   pkt T_NS ID u|d LEN       a packet entering the cell at T_NS (uplink: at the UE; downlink: at the gNB)
 *   off ID FROM_NS UNTIL_NS   a handover's interruption of UE ID (not scheduled in between)
 *   run T_NS                  process every slot that has started by T_NS (no arrival needed)
 *   stats                     print "stats " and the cell's counters (JSON, as the relay's nrstats)
 * stdout: "ok" or "err ..." per configuration line, and for every packet the model is done with
 * "pkt ID u|d T_ARR_NS T_DEP_NS" (T_DEP_NS -1: lost after every HARQ transmission, -2: buffer full).
 * Build: gcc -O2 -Wall -o nrsim nrsim.c nrcell.c
 */
#include "relay.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const DIR_NAME[2] = {"uplink", "downlink"};
static uint64_t rng = 0x9E3779B97F4A7C15ULL;

double rng_uniform(void) { /* splitmix64 */
    uint64_t z = (rng += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL; z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return ((z ^ (z >> 31)) >> 11) * (1.0 / 9007199254740992.0);
}

void nr_deliver(struct link *cell, struct link *ue, int dir, const unsigned char *data, int len, ns_t arr, ns_t dep) {
    (void)cell; (void)data; (void)len;
    printf("pkt %d %c %lld %lld\n", ue->id, dir == UPLINK ? 'u' : 'd', (long long)arr, (long long)dep);
}

#define MAX_UES 4000
static struct link cell, ues[MAX_UES + 1];
static struct link *members[MAX_UES];

int main(void) {
    char line[4096], *w[24];
    cell.fda = cell.fdb = -1; cell.used = 1; cell.members = members;
    while (fgets(line, sizeof line, stdin)) {
        int nw = 0;
        for (char *t = strtok(line, " \t\r\n"); t && nw < 24; t = strtok(NULL, " \t\r\n")) w[nw++] = t;
        if (!nw) continue;
        if (!strcmp(w[0], "seed") && nw == 2) { rng = strtoull(w[1], NULL, 10); puts("ok"); }
        else if (!strcmp(w[0], "nr")) { const char *e = nr_config(&cell, w + 1, nw - 1); if (e) printf("err %s\n", e); else puts("ok"); }
        else if (!strcmp(w[0], "ue") && nw == 3) {
            int id = atoi(w[1]);
            if (id < 1 || id > MAX_UES || ues[id].used) { puts("err ue: ID 1..4000, once"); continue; }
            struct link *u = &ues[id];
            u->used = 1; u->id = id; u->fda = 3; u->fdb = -1; u->cell = &cell;
            members[cell.nmembers++] = u;
            const char *e = nr_ue_slice(u, atoi(w[2]));
            if (e) printf("err %s\n", e); else puts("ok");
        } else if (!strcmp(w[0], "pkt") && nw == 5) {
            ns_t t = strtoll(w[1], NULL, 10); int id = atoi(w[2]);
            if (!nr_on(&cell) || id < 1 || id > MAX_UES || !ues[id].used) { puts("err pkt: cell on and a known UE first"); continue; }
            nr_run(t);
            static unsigned char data[9232];
            int len = atoi(w[4]); if (len < 1) len = 1; if (len > (int)sizeof data) len = sizeof data;
            nr_arrive(&cell, &ues[id], w[3][0] == 'd' ? DOWNLINK : UPLINK, data, len, t);
        } else if (!strcmp(w[0], "off") && nw == 4) {
            int id = atoi(w[1]);
            if (id < 1 || id > MAX_UES || !ues[id].used) { puts("err off: a known UE"); continue; }
            const char *e = nr_interrupt(&ues[id], strtoll(w[2], NULL, 10), strtoll(w[3], NULL, 10));
            if (e) printf("err %s\n", e); else puts("ok");
        } else if (!strcmp(w[0], "run") && nw == 2) { nr_run(strtoll(w[1], NULL, 10)); puts("ok"); }
        else if (!strcmp(w[0], "stats")) {
            if (!nr_on(&cell)) { puts("err stats: the cell is not on"); continue; }
            fputs("stats ", stdout); nr_print_stats(&cell); putchar('\n');
        }
        else printf("err unknown line %.32s\n", w[0]);
    }
    while (nr_on(&cell) && nr_next_wake() != INT64_MAX) nr_run(nr_next_wake());
    return 0;
}
