/* factorysat link relay: the control channel, requests on stdin and replies on stdout.
 *
 * The protocol is documented in ../relayproc.py; ../pyrelay.py implements the same rules and the
 * same reply texts. Guarantees: every request line gets exactly one reply line ("ok ..." or
 * "err <reason>"); an accepted "sched ID DIR N" (N in 1..MAX_SCHED_ROWS) takes exactly the next N
 * lines as its rows, then replies once (naming the first bad row); a line is at most LINE_MAX_BYTES
 * (a longer one gets "err line too long" when its newline arrives and is discarded, in fixed memory);
 * every number is checked for syntax, finiteness and range; nothing here blocks.
 */
#include "relay.h"
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>

#define LINE_MAX_BYTES 4096       /* one request or row, without its newline */
#define MAX_SCHED_ROWS 1000000
#define MAX_WORDS 20              /* words kept per line; more are counted only */
#define MAX_ID 2147483647ULL
#define MAX_T_NS 4000000000000000000ULL
#define MAX_IFNAME 15             /* IFNAMSIZ - 1 */
#define ERR_LEN 320

struct field { const char *name, *allowed; double lo, hi; int integral; };
static const struct field FIELDS[13] = {  /* the 13 numbers of P... in wire order */
    {"delay_ns", "an integer 0..3600000000000", 0, 3.6e12, 1},
    {"jitter_ns", "an integer 0..3600000000000", 0, 3.6e12, 1},
    {"jdist", "0, 1 or 2", 0, 2, 1},
    {"loss_prob", "0..1", 0, 1, 0},
    {"ge_on", "0 or 1", 0, 1, 1},
    {"ge_p", "0..1", 0, 1, 0},
    {"ge_r", "0..1", 0, 1, 0},
    {"ge_loss_good", "0..1", 0, 1, 0},
    {"ge_loss_bad", "0..1", 0, 1, 0},
    {"rate_bps", "0 (unlimited) or 1..1000000000000", 1, 1e12, 0},  /* 0 is allowed too */
    {"qlim_pkts", "an integer 0..1000000000000000", 0, 1e15, 1},
    {"qlim_bytes", "an integer 0..1000000000000000", 0, 1e15, 1},
    {"up", "0 or 1", 0, 1, 1},
};
#define RATE_FIELD 9

static struct { unsigned long long requests, errors, too_long, rows; } cnt;

const long long LATE_EDGE_NS[LATE_BUCKETS - 1] = {10000, 20000, 50000, 100000, 200000, 500000, 1000000,
                                                   2000000, 5000000, 10000000, 20000000, 50000000, 100000000};

void print_dir(const char *name, const struct dir *d) {
    printf("\"%s\":{\"rx\":%llu,\"tx\":%llu,\"dropped_loss\":%llu,\"dropped_queue\":%llu,"
           "\"dropped_down\":%llu,\"dropped_error\":%llu,\"dropped_mem\":%llu,\"rx_bytes\":%llu,"
           "\"tx_bytes\":%llu,\"queued\":%d,\"late_sum_ns\":%llu,\"late_max_ns\":%llu,"
           "\"late_over_50us\":%llu,\"dropped_unwired\":%llu,\"xn_forwarded\":%llu,\"serialised\":%llu,"
           "\"wait_sum_ns\":%llu,\"wait_max_ns\":%llu,\"tx_retries\":%llu,\"dropped_full\":%llu,\"late_hist\":[",
           name, d->rx, d->tx, d->drop_loss, d->drop_queue, d->drop_down, d->drop_err, d->drop_mem, d->rx_bytes,
           d->tx_bytes, d->qn + (d->qos ? d->qos->waiting : 0), d->late_sum_ns, d->late_max_ns, d->late_over_50us, d->drop_unwired, d->xn_forwarded,
           d->serialised, d->wait_sum_ns, d->wait_max_ns, d->tx_retries, d->drop_full);
    for (int i = 0; i < LATE_BUCKETS; i++) printf(i ? ",%llu" : "%llu", d->late_hist[i]);
    printf("]");
    if (d->qos) { /* is or was on: the classes of its last configuration */
        printf(",\"classes\":[");
        for (int i = 0; i < d->qos->n; i++) {
            const struct qclass *c = &d->qos->c[i];
            printf("%s{\"rx\":%llu,\"tx\":%llu,\"dropped_queue\":%llu,\"tx_bytes\":%llu,\"queued\":%d,"
                   "\"queue_max\":%llu,\"wait_sum_ns\":%llu,\"wait_max_ns\":%llu}", i ? "," : "",
                   c->rx, c->tx, c->drop_queue, c->tx_bytes, c->n, c->queue_max, c->wait_sum_ns, c->wait_max_ns);
        }
        putchar(']');
    }
    putchar('}');
}


/* the line being read: at most LINE_MAX_BYTES kept, a longer one only flagged */
static char line[LINE_MAX_BYTES + 1]; static size_t line_len; static int line_long;

/* an accepted "sched" whose rows are still coming */
static struct {
    int n, left, next, id, dir, cap, oom;
    struct row *rows;
    char err[ERR_LEN + 32];
} sp;

static void end_reply(int is_err) {
    putchar('\n'); fflush(stdout);
    cnt.requests++; cnt.errors += is_err;
}
static void ok(const char *fmt, ...) {
    va_list ap; va_start(ap, fmt); fputs("ok", stdout); vprintf(fmt, ap); va_end(ap); end_reply(0);
}
static void err(const char *fmt, ...) {
    va_list ap; va_start(ap, fmt); fputs("err ", stdout); vprintf(fmt, ap); va_end(ap); end_reply(1);
}

static int is_ws(int c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

static int bad_chars(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && !is_ws(c)) || c >= 0x7f) return 1;
    }
    return 0;
}

/* Split s in place at whitespace; keeps up to MAX_WORDS words in w, returns how many there are. */
static int split(char *s, char **w) {
    int n = 0;
    for (;;) {
        while (is_ws(*s)) s++;
        if (!*s) return n;
        if (n < MAX_WORDS) w[n] = s;
        n++;
        while (*s && !is_ws(*s)) s++;
        if (*s) *s++ = 0;
    }
}

/* [+-]?(digits[.digits]|.digits)([eE][+-]?digits)? and nothing else (no hex, inf, nan) */
static int is_decimal(const char *p) {
    int digits = 0;
    if (*p == '+' || *p == '-') p++;
    while (*p >= '0' && *p <= '9') { p++; digits++; }
    if (*p == '.') for (p++; *p >= '0' && *p <= '9'; p++) digits++;
    if (!digits) return 0;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-') p++;
        if (!(*p >= '0' && *p <= '9')) return 0;
        while (*p >= '0' && *p <= '9') p++;
    }
    return *p == 0;
}

/* Decimal digits only, value <= max. */
static int parse_uint(const char *s, unsigned long long max, unsigned long long *out) {
    unsigned long long v = 0;
    if (!*s) return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return -1;
        unsigned d = (unsigned)(*s - '0');
        if (d > max || v > (max - d) / 10) return -1; /* d > max: max - d would wrap (max < 9) */
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static int parse_params(char **w, int nw, struct params *p, char *e) {
    double f[13];
    if (nw != 13) { snprintf(e, ERR_LEN, "expected 13 numbers, got %d", nw); return -1; }
    for (int i = 0; i < 13; i++) {
        const struct field *F = &FIELDS[i];
        double v = is_decimal(w[i]) ? strtod(w[i], NULL) : NAN;
        int good = isfinite(v) && ((i == RATE_FIELD && v == 0) || (v >= F->lo && v <= F->hi))
                   && (!F->integral || v == floor(v));
        if (!good) { snprintf(e, ERR_LEN, "%s: got %.32s; allowed %s", F->name, w[i], F->allowed); return -1; }
        f[i] = v;
    }
    p->delay_ns = (ns_t)f[0]; p->jitter_ns = (ns_t)f[1]; p->jdist = (int)f[2]; p->loss_p = f[3];
    p->ge = (int)f[4]; p->ge_p = f[5]; p->ge_r = f[6]; p->ge_lg = f[7]; p->ge_lb = f[8];
    p->rate_bps = f[9]; p->qlim_pkts = (long long)f[10]; p->qlim_bytes = (long long)f[11]; p->up = (int)f[12];
    return 0;
}

static int dir_arg(const char *s) {
    for (int k = UPLINK; k <= DOWNLINK; k++) if (!strcmp(s, DIR_NAME[k])) return k;
    return -1;
}

/* ---- sched: header, then exactly N rows, then one reply ---- */
static void sched_start(char **w, int nw) {
    unsigned long long v;
    if (nw < 4) { err("usage: sched ID uplink|downlink N"); return; }
    if (parse_uint(w[3], MAX_SCHED_ROWS, &v) || v < 1) {
        err("sched: N: got %.32s; allowed an integer 1..%d (no rows read)", w[3], MAX_SCHED_ROWS);
        return;
    }
    free(sp.rows);
    memset(&sp, 0, sizeof sp);
    sp.n = sp.left = (int)v;
    if (nw != 4 || (sp.dir = dir_arg(w[2])) < 0) snprintf(sp.err, sizeof sp.err, "usage: sched ID uplink|downlink N");
    else if (parse_uint(w[1], MAX_ID, &v)) snprintf(sp.err, sizeof sp.err, "ID: got %.32s; allowed an integer 0..%llu", w[1], MAX_ID);
    else sp.id = (int)v;
}

static void sched_finish(void) {
    struct link *L = NULL;
    if (sp.err[0]) err("%s", sp.err);
    else if (sp.oom) err("out of memory for %d rows", sp.n);
    else if (!(L = find_link(sp.id))) err("no link %d", sp.id);
    else { dir_set_schedule(&L->d[sp.dir], sp.rows, sp.n); sp.rows = NULL; ok(""); }
    free(sp.rows); sp.rows = NULL; sp.cap = 0;
}

static void sched_row(char *s, size_t n, int too_long) {
    int i = sp.next++;
    cnt.rows++;
    if (!sp.err[0] && !sp.oom) {
        char *w[MAX_WORDS], e[ERR_LEN] = ""; int nw = 0; unsigned long long t = 0; struct row r;
        if (too_long) snprintf(e, sizeof e, "line too long (max %d bytes)", LINE_MAX_BYTES);
        else if (bad_chars(s, n)) snprintf(e, sizeof e, "bad character (printable ASCII only)");
        else if ((nw = split(s, w)) != 14) snprintf(e, sizeof e, "expected 14 numbers (t_ns and 13 parameters), got %d", nw);
        else if (parse_uint(w[0], MAX_T_NS, &t)) snprintf(e, sizeof e, "t_ns: got %.32s; allowed an integer 0..%llu", w[0], MAX_T_NS);
        else if (parse_params(w + 1, 13, &r.p, e)) {}
        else if (i > 0 && (ns_t)t < sp.rows[i - 1].t) snprintf(e, sizeof e, "t_ns: got %.32s; allowed >= the previous row's t_ns", w[0]);
        if (e[0]) snprintf(sp.err, sizeof sp.err, "row %d: %s", i, e);
        else {
            if (i >= sp.cap) { /* grow as rows arrive: a huge N alone allocates nothing */
                int nc = sp.cap ? sp.cap * 2 : 1024;
                if (nc > sp.n) nc = sp.n;
                struct row *nr = realloc(sp.rows, (size_t)nc * sizeof *nr);
                if (nr) { sp.rows = nr; sp.cap = nc; } else sp.oom = 1;
            }
            if (!sp.oom) { r.t = (ns_t)t; sp.rows[i] = r; }
        }
    }
    if (--sp.left == 0) sched_finish();
}

/* aa:bb:cc:dd:ee:ff (hex digits either case) */
static int parse_mac(const char *s, unsigned char mac[6]) {
    if (strlen(s) != 17) return -1;
    for (int i = 0; i < 6; i++) {
        unsigned v = 0;
        for (int j = 0; j < 2; j++) {
            char ch = s[3 * i + j];
            int x = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                    : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
            if (x < 0) return -1;
            v = v * 16 + (unsigned)x;
        }
        if (i < 5 && s[3 * i + 2] != ':') return -1;
        mac[i] = (unsigned char)v;
    }
    return 0;
}

/* ---- cells (cell.c): cell ID N3 | join ID CELL MAC | leave ID ---- */
static void cell_request(const char *c, char **w, int nw) {
    int join = c[0] == 'j', leave = c[0] == 'l', want = join ? 4 : leave ? 2 : 3;
    unsigned long long v[2]; unsigned char mac[6]; struct link *L[2] = {NULL, NULL}; const char *e;
    if (nw != want) {
        err(join ? "usage: join ID CELL MAC" : leave ? "usage: leave ID" : "usage: cell ID N3");
        return;
    }
    for (int i = 0; i < (leave ? 1 : 2); i++)
        if (parse_uint(w[1 + i], MAX_ID, &v[i])) {
            err("%s: got %.32s; allowed an integer 0..%llu", i ? (join ? "CELL" : "N3") : "ID", w[1 + i], MAX_ID);
            return;
        }
    if (join && parse_mac(w[3], mac)) { err("MAC: got %.32s; allowed aa:bb:cc:dd:ee:ff", w[3]); return; }
    for (int i = 0; i < (leave ? 1 : 2); i++)
        if (!(L[i] = find_link((int)v[i]))) { err("no link %d", (int)v[i]); return; }
    if (leave) { cell_leave(L[0]); ok(""); return; }
    e = join ? cell_join(L[0], L[1], mac) : cell_backhaul(L[0], L[1]);
    if (e) err("%s", e); else ok("");
}

/* ---- n3dscp ID DSCP|- : the DSCP UE radio link ID's uplink packets get entering its cell (cell.c) ---- */
static void n3dscp_request(char **w, int nw) {
    unsigned long long v, dscp = 0; struct link *L; int keep;
    if (nw != 3) { err("usage: n3dscp ID DSCP|-"); return; }
    if (parse_uint(w[1], MAX_ID, &v)) { err("ID: got %.32s; allowed an integer 0..%llu", w[1], MAX_ID); return; }
    keep = !strcmp(w[2], "-");
    if (!keep && parse_uint(w[2], 63, &dscp)) { err("DSCP: got %.32s; allowed an integer 0..63 or -", w[2]); return; }
    if (!(L = find_link((int)v))) { err("no link %d", (int)v); return; }
    if (L->fda < 0 || L->fdb >= 0) { err("link %d is not a UE radio link (its A end an interface, its B end -)", (int)v); return; }
    cell_n3_dscp(L, keep ? -1 : (int)dscp); ok("");
}

/* ---- NR cells (nrcell.c): nr CELL grid|timing|slice|on ... | nrue ID SLICE | nrstats CELL |
 * nroff ID FROM_NS UNTIL_NS (a handover's interruption, CLOCK_MONOTONIC) ---- */
static void nr_request(const char *c, char **w, int nw) {
    unsigned long long v, sl, t[2]; struct link *L; const char *e;
    int stats = !strcmp(c, "nrstats"), ue = !strcmp(c, "nrue");
    if (!strcmp(c, "nroff")) {
        if (nw != 4) { err("usage: nroff ID FROM_NS UNTIL_NS"); return; }
        if (parse_uint(w[1], MAX_ID, &v)) { err("ID: got %.32s; allowed an integer 0..%llu", w[1], MAX_ID); return; }
        for (int i = 0; i < 2; i++)
            if (parse_uint(w[2 + i], MAX_T_NS, &t[i])) {
                err("%s: got %.32s; allowed an integer 0..%llu", i ? "UNTIL_NS" : "FROM_NS", w[2 + i], MAX_T_NS);
                return;
            }
        if (!(L = find_link((int)v))) { err("no link %d", (int)v); return; }
        e = nr_interrupt(L, (ns_t)t[0], (ns_t)t[1]);
        if (e) err("%s", e); else ok("");
        return;
    }
    if (nw < 2 || (stats && nw != 2) || (ue && nw != 3) || (!stats && !ue && nw < 3)) {
        err(stats ? "usage: nrstats CELL" : ue ? "usage: nrue ID SLICE" : "usage: nr CELL grid|timing|slice|on ...");
        return;
    }
    if (parse_uint(w[1], MAX_ID, &v)) { err("%s: got %.32s; allowed an integer 0..%llu", ue ? "ID" : "CELL", w[1], MAX_ID); return; }
    if (!(L = find_link((int)v))) { err("no link %d", (int)v); return; }
    if (stats) {
        if (!nr_on(L)) { err("link %d is not an NR cell", (int)v); return; }
        fputs("ok ", stdout); nr_print_stats(L); end_reply(0);
        return;
    }
    if (ue) {
        if (parse_uint(w[2], NR_MAX_SLICES - 1, &sl)) { err("SLICE: got %.32s; allowed an integer 0..%d", w[2], NR_MAX_SLICES - 1); return; }
        e = nr_ue_slice(L, (int)sl);
    } else e = nr_config(L, w + 2, nw - 2);
    if (e) err("%s", e); else ok("");
}

/* ---- class-based queues (relay.c): qos ID DIR N MAP W_0 .. W_{N-1} | qos ID DIR off ---- */
#define QOS_USAGE "usage: qos ID uplink|downlink N MAP W_0 .. W_{N-1} | qos ID uplink|downlink off"
static void qos_request(char **w, int nw) {
    unsigned long long v, n = 0, x; int dir, wt[QOS_MAX_CLASSES]; unsigned char map[QOS_NDSCP]; struct link *L;
    if (nw < 4 || (dir = dir_arg(w[2])) < 0) { err(QOS_USAGE); return; }
    if (parse_uint(w[1], MAX_ID, &v)) { err("ID: got %.32s; allowed an integer 0..%llu", w[1], MAX_ID); return; }
    if (!strcmp(w[3], "off")) {
        if (nw != 4) { err(QOS_USAGE); return; }
    } else {
        if (parse_uint(w[3], QOS_MAX_CLASSES, &n) || n < 1) {
            err("N: got %.32s; allowed an integer 1..%d or off", w[3], QOS_MAX_CLASSES); return;
        }
        if (nw != 5 + (int)n) { err("expected MAP and %d weights after N, got %d words", (int)n, nw - 4); return; }
        size_t len = strlen(w[4]);
        if (len != QOS_NDSCP) {
            err("MAP: got %zu characters; allowed exactly %d digits 0..%d (digit k: the class of DSCP k)",
                len, QOS_NDSCP, (int)n - 1);
            return;
        }
        for (int k = 0; k < QOS_NDSCP; k++) {
            if (w[4][k] < '0' || w[4][k] > '0' + (int)n - 1) {
                err("MAP: DSCP %d: got %c; allowed a digit 0..%d", k, w[4][k], (int)n - 1); return;
            }
            map[k] = (unsigned char)(w[4][k] - '0');
        }
        for (int i = 0; i < (int)n; i++) {
            if (parse_uint(w[5 + i], QOS_MAX_WEIGHT, &x)) {
                err("W_%d: got %.32s; allowed an integer 0 (strict priority) or 1..%d (weight)", i, w[5 + i],
                    QOS_MAX_WEIGHT);
                return;
            }
            wt[i] = (int)x;
        }
    }
    if (!(L = find_link((int)v))) { err("no link %d", (int)v); return; }
    const char *e = dir_set_qos(&L->d[dir], (int)n, map, wt);
    if (e) err("%s", e); else ok("");
}

/* ---- one request line; -1 after quit ---- */
static int request(char *s, size_t n, int too_long) {
    char *w[MAX_WORDS]; int nw, id, dir = -1; unsigned long long v; struct link *L;
    if (too_long) { err("line too long (max %d bytes)", LINE_MAX_BYTES); return 0; }
    if (bad_chars(s, n)) { err("bad character (printable ASCII only)"); return 0; }
    if ((nw = split(s, w)) == 0) { err("empty command"); return 0; }
    const char *c = w[0];
    int simple = !strcmp(c, "ping") || !strcmp(c, "quit") || !strcmp(c, "now") || !strcmp(c, "ctlstats");
    if (simple && nw != 1) err("usage: %s", c);
    else if (!strcmp(c, "ping")) ok("");
    else if (!strcmp(c, "quit")) { ok(""); return -1; }
    else if (!strcmp(c, "now")) ok(" %lld", (long long)mono_ns());
    else if (!strcmp(c, "ctlstats"))
        ok(" {\"requests\":%llu,\"errors\":%llu,\"too_long\":%llu,\"rows\":%llu}",
           cnt.requests, cnt.errors, cnt.too_long, cnt.rows);
    else if (!strcmp(c, "sched")) sched_start(w, nw);
    else if (!strcmp(c, "seed")) {
        if (nw != 2) err("usage: seed S");
        else if (parse_uint(w[1], ULLONG_MAX, &v)) err("seed: got %.32s; allowed an integer 0..%llu", w[1], ULLONG_MAX);
        else { rng_seed(v); ok(""); }
    } else if (!strcmp(c, "add") || !strcmp(c, "del") || !strcmp(c, "stats") || !strcmp(c, "set")) {
        int add = c[0] == 'a', set = !strcmp(c, "set"); const char *e; struct params p; char pe[ERR_LEN];
        if (set && (nw < 3 || (dir = dir_arg(w[2])) < 0)) { err("usage: set ID uplink|downlink P..."); return 0; }
        if (!set && nw != (add ? 4 : 2)) { if (add) err("usage: add ID IFA IFB"); else err("usage: %s ID", c); return 0; }
        if (parse_uint(w[1], MAX_ID, &v)) { err("ID: got %.32s; allowed an integer 0..%llu", w[1], MAX_ID); return 0; }
        id = (int)v;
        if (add) {
            const char *lng = strlen(w[2]) > MAX_IFNAME ? w[2] : strlen(w[3]) > MAX_IFNAME ? w[3] : NULL;
            if (lng) err("interface name too long: %.32s (max %d bytes)", lng, MAX_IFNAME);
            else if (!strcmp(w[2], w[3]) && strcmp(w[2], INSIDE)) err("IFA and IFB must differ");
            else if ((e = link_add(id, w[2], w[3]))) err("%s", e);
            else ok("");
        } else if (set && parse_params(w + 3, nw - 3, &p, pe)) err("%s", pe);
        else if (!(L = find_link(id))) err("no link %d", id);
        else if (c[0] == 'd') { link_del(L); ok(""); }
        else if (set) {
            struct row *r = malloc(sizeof *r);
            if (!r) err("out of memory");
            else { r->t = 0; r->p = p; dir_set_schedule(&L->d[dir], r, 1); ok(""); }
        } else {
            fputs("ok {", stdout); print_dir(DIR_NAME[UPLINK], &L->d[UPLINK]); putchar(',');
            print_dir(DIR_NAME[DOWNLINK], &L->d[DOWNLINK]); putchar('}'); end_reply(0);
        }
    } else if (!strcmp(c, "cell") || !strcmp(c, "join") || !strcmp(c, "leave")) cell_request(c, w, nw);
    else if (!strcmp(c, "n3dscp")) n3dscp_request(w, nw);
    else if (!strcmp(c, "qos")) qos_request(w, nw);
    else if (!strcmp(c, "nr") || !strcmp(c, "nrue") || !strcmp(c, "nrstats") || !strcmp(c, "nroff"))
        nr_request(c, w, nw);
    else err("unknown command %.32s", c);
    return 0;
}

static int dispatch(void) {
    line[line_len] = 0;
    cnt.too_long += line_long;
    int r = 0;
    if (sp.left) sched_row(line, line_len, line_long);
    else r = request(line, line_len, line_long);
    line_len = 0; line_long = 0;
    return r;
}

int ctl_input(void) {
    static char buf[65536];
    ssize_t n = read(0, buf, sizeof buf);
    if (n == 0) return -1;
    if (n < 0) return errno == EAGAIN || errno == EINTR ? 0 : -1;
    for (char *p = buf, *end = buf + n; p < end;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t k = (size_t)((nl ? nl : end) - p), room = LINE_MAX_BYTES - line_len;
        if (k > room) { line_long = 1; k = room; }
        memcpy(line + line_len, p, k); line_len += k;
        if (!nl) break;
        p = nl + 1;
        if (dispatch() < 0) return -1;
    }
    return 0;
}
