/* factorysat host-stall sentinel: one tiny real-time thread per online CPU (pinned; a hypervisor
 * deschedules virtual CPUs one at a time) wakes on an absolute periodic timer and records how late
 * each wake-up was. A wake-up later than the threshold is a stall window: the time
 * between the timer's deadline and the actual wake-up, during which this real-time thread (of higher
 * priority than the relay and the traffic engine) could not run, so neither could they on that CPU.
 * Hypervisor steal time (/proc/stat) is sampled once a second and after every stall.
 *
 * usage: sentinel OUT PERIOD_US THRESHOLD_US [RT_PRIO]
 * OUT (text, flushed at every stall and every second; see topologies/hoststall.py for the reader):
 *   start MONO_NS REAL_NS PERIOD_NS THRESHOLD_NS NCPU
 *   rt OK                                                   (1: every thread got SCHED_FIFO, memory locked)
 *   stall CPU START_REAL_NS END_REAL_NS LATE_NS STEAL_TICKS (steal: /proc/stat total after the stall)
 *   steal REAL_NS STEAL_TICKS                               (once a second)
 *   period CPU PERIOD_NS CPU_NS                             (a thread over its CPU budget wakes less often)
 *   end MONO_NS REAL_NS WAKEUPS MAX_LATE_NS HIST_BUCKET_NS C0 C1 ... C(N-1) OVERFLOW
 * Lines of different CPUs interleave (windows may overlap across CPUs). The histogram holds every
 * wake-up's lateness (all CPUs) in buckets of HIST_BUCKET_NS (the last count is
 * everything beyond the buckets). Stops on SIGTERM/SIGINT or when its parent dies; "end" last. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

typedef long long ns_t;
#define HIST_N 2000
#define HIST_BUCKET_NS 5000LL /* 5 us buckets up to 10 ms */
#define CPU_BUDGET_NS 20000000LL /* at most 2 % of a CPU per thread (per second of wall time) ... */
#define MAX_PERIOD_NS 64000000LL /* ... by waking less often, down to every 64 ms (slow, emulated CPUs) */

static volatile sig_atomic_t stop_flag = 0;
static void on_signal(int sig) { (void)sig; stop_flag = 1; }

static ns_t clock_ns(clockid_t c) {
    struct timespec ts;
    clock_gettime(c, &ts);
    return (ns_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long long steal_ticks(void) {
    FILE *f = fopen("/proc/stat", "r");
    long long v[8] = {0};
    if (!f) return -1;
    /* cpu user nice system idle iowait irq softirq steal */
    int n = fscanf(f, "cpu %lld %lld %lld %lld %lld %lld %lld %lld", &v[0], &v[1], &v[2], &v[3], &v[4],
                   &v[5], &v[6], &v[7]);
    fclose(f);
    return n == 8 ? v[7] : -1;
}

static ns_t period, threshold;
static int prio;
static FILE *out;
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static long long hist[HIST_N + 1], wakeups;
static ns_t max_late;
static int rt_ok = 1;
static long first_cpu = -1;

static void emit_line(const char *line) {
    pthread_mutex_lock(&out_lock);
    fputs(line, out);
    fflush(out);
    pthread_mutex_unlock(&out_lock);
}

static void *watch_cpu(void *arg) {
    int cpu = (int)(long)arg;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (pthread_setaffinity_np(pthread_self(), sizeof set, &set) != 0) rt_ok = 0;
    if (prio > 0) {
        struct sched_param sp = {.sched_priority = prio};
        if (pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp) != 0) rt_ok = 0;
    } else {
        rt_ok = 0;
    }
    char line[160];
    ns_t my_period = period, cpu_mark = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    ns_t next = clock_ns(CLOCK_MONOTONIC) + my_period, next_steal = next + 1000000000LL, next_budget = next_steal;
    while (!stop_flag) {
        struct timespec ts = {.tv_sec = next / 1000000000LL, .tv_nsec = next % 1000000000LL};
        int rc = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
        if (rc == EINTR) continue;
        ns_t now = clock_ns(CLOCK_MONOTONIC), real = clock_ns(CLOCK_REALTIME);
        ns_t late = now - next;
        if (late < 0) late = 0;
        pthread_mutex_lock(&out_lock);
        wakeups++;
        hist[late / HIST_BUCKET_NS < HIST_N ? late / HIST_BUCKET_NS : HIST_N]++;
        if (late > max_late) max_late = late;
        pthread_mutex_unlock(&out_lock);
        if (late > threshold) {
            snprintf(line, sizeof line, "stall %d %lld %lld %lld %lld\n", cpu, real - late, real, late, steal_ticks());
            emit_line(line);
        }
        if (cpu == first_cpu && now >= next_steal) {
            snprintf(line, sizeof line, "steal %lld %lld\n", real, steal_ticks());
            emit_line(line);
            next_steal = now + 1000000000LL;
        }
        if (now >= next_budget) { /* never a burden: above CPU_BUDGET of a CPU, wake half as often */
            ns_t used = clock_ns(CLOCK_THREAD_CPUTIME_ID) - cpu_mark;
            if (used > CPU_BUDGET_NS && my_period < MAX_PERIOD_NS) {
                my_period *= 2;
                snprintf(line, sizeof line, "period %d %lld %lld\n", cpu, my_period, used);
                emit_line(line);
            }
            cpu_mark += used;
            next_budget = now + 1000000000LL;
        }
        next += my_period;
        if (next <= now) next = now + my_period; /* after a stall: resume the grid, do not catch up */
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: sentinel OUT PERIOD_US THRESHOLD_US [RT_PRIO]\n");
        return 2;
    }
    period = atoll(argv[2]) * 1000LL;
    threshold = atoll(argv[3]) * 1000LL;
    prio = argc > 4 ? atoi(argv[4]) : 20;
    if (period < 100000 || period > 1000000000LL || threshold < 1000 || prio < 0 || prio > 98) {
        fprintf(stderr, "sentinel: PERIOD_US 100..1e6, THRESHOLD_US >= 1, RT_PRIO 0..98\n");
        return 2;
    }
    out = fopen(argv[1], "w");
    if (!out) {
        fprintf(stderr, "sentinel: %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    if (mlockall(MCL_CURRENT | MCL_FUTURE) != 0) rt_ok = 0;
    cpu_set_t allowed;
    long ncpu = 0, cpus[256];
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) {
        fprintf(stderr, "sentinel: sched_getaffinity: %s\n", strerror(errno));
        return 1;
    }
    for (int c = 0; c < CPU_SETSIZE && ncpu < 256; c++)
        if (CPU_ISSET(c, &allowed)) cpus[ncpu++] = c;
    fprintf(out, "start %lld %lld %lld %lld %ld\n", clock_ns(CLOCK_MONOTONIC), clock_ns(CLOCK_REALTIME),
            period, threshold, ncpu);
    fflush(out);
    first_cpu = cpus[0];
    pthread_t threads[256];
    long started = 0;
    for (long i = 0; i < ncpu; i++)
        if (pthread_create(&threads[started], NULL, watch_cpu, (void *)cpus[i]) == 0) started++;
    for (long i = 0; i < started; i++) pthread_join(threads[i], NULL);
    fprintf(out, "rt %d\n", rt_ok && started == ncpu);
    fprintf(out, "end %lld %lld %lld %lld %lld", clock_ns(CLOCK_MONOTONIC), clock_ns(CLOCK_REALTIME), wakeups,
            max_late, HIST_BUCKET_NS);
    for (int i = 0; i <= HIST_N; i++) fprintf(out, " %lld", hist[i]);
    fprintf(out, "\n");
    return fclose(out) == 0 ? 0 : 1;
}
