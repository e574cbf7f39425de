/*
 * raftfs-sim: runs the cluster simulator over many seeds.
 *
 *   raftfs-sim [--seeds N] [--first S] [--seed S --trace] [--nodes K]
 *              [--duration MS] [--no-faults] [--stop-at-first]
 *              [--wipes] [--lin-only]
 *
 * The seed count is --seeds, else $RAFTFS_SIM_SEEDS, else 2000; when both are
 * given the larger wins, so a soak can raise the count the test suite uses. A failing seed prints
 * the one-line command that replays it with a full trace. The last line is
 * always "simulation: S seeds, N steps, V violations".
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../lib/sim.h"

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [--seeds N] [--first S] [--seed S] [--trace]\n"
            "          [--nodes 3|5|7] [--duration MS] [--no-faults]\n"
            "          [--stop-at-first] [--wipes] [--lin-only]\n",
            argv0);
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    if (s == NULL || *s == '\0') {
        return -1;
    }
    *out = strtoull(s, &end, 10);
    return *end == '\0' ? 0 : -1;
}

int main(int argc, char **argv)
{
    uint64_t seeds = 2000, first = 1, nodes = 0, duration = 0;
    bool one = false, trace = false, faults = true, stop = false;
    bool wipes = false, lin_only = false;
    const char *env = getenv("RAFTFS_SIM_SEEDS");
    if (env != NULL && parse_u64(env, &seeds) != 0) {
        fprintf(stderr, "raftfs-sim: RAFTFS_SIM_SEEDS=%s is not a number\n",
                env);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (strcmp(a, "--seeds") == 0) {
            bad = parse_u64(v, &seeds), i++;
        } else if (strcmp(a, "--first") == 0) {
            bad = parse_u64(v, &first), i++;
        } else if (strcmp(a, "--seed") == 0) {
            bad = parse_u64(v, &first), i++;
            one = true;
        } else if (strcmp(a, "--nodes") == 0) {
            bad = parse_u64(v, &nodes), i++;
            bad |= nodes != 3 && nodes != 5 && nodes != 7;
        } else if (strcmp(a, "--duration") == 0) {
            bad = parse_u64(v, &duration), i++;
        } else if (strcmp(a, "--trace") == 0) {
            trace = true;
        } else if (strcmp(a, "--no-faults") == 0) {
            faults = false;
        } else if (strcmp(a, "--stop-at-first") == 0) {
            stop = true;
        } else if (strcmp(a, "--wipes") == 0) {
            wipes = true;
        } else if (strcmp(a, "--lin-only") == 0) {
            lin_only = true;
        } else {
            bad = 1;
        }
        if (bad) {
            fprintf(stderr, "raftfs-sim: bad argument '%s%s%s'\n", a,
                    v ? " " : "", v ? v : "");
            usage(argv[0]);
            return 2;
        }
    }
    if (env != NULL) {
        uint64_t e = strtoull(env, NULL, 10);
        if (e > seeds) {
            seeds = e;
        }
    }
    if (one) {
        seeds = 1;
    }
    uint64_t steps = 0, violations = 0, failed = 0, reads = 0, commits = 0,
             faults_n = 0, snaps = 0, acked = 0, barriers = 0, timeouts = 0,
             leases = 0, leased = 0, wiped = 0, wiped_accepted = 0,
             merged = 0,
             lin_ops = 0, lin_explored = 0, lin_unfinished = 0;
    uint64_t race_steps[8] = {0};
    time_t start = time(NULL);
    for (uint64_t k = 0; k < seeds; k++) {
        uint64_t seed = first + k;
        struct sim_options o;
        sim_options_default(&o, seed);
        o.nodes = (unsigned)nodes;
        o.faults = faults;
        o.wipes = wipes;
        o.lin_only = lin_only;
        if (duration > 0) {
            o.duration_ms = (unsigned)duration;
        }
        o.trace = trace ? stdout : NULL;
        struct sim_result r;
        sim_run(&o, &r);
        steps += r.steps;
        violations += r.violations;
        reads += r.reads;
        commits += r.committed;
        faults_n += r.faults;
        snaps += r.snapshots_sent;
        acked += r.acked;
        barriers += r.barriers;
        timeouts += r.timeouts;
        leases += r.lease_runs;
        leased += r.leased_reads;
        wiped += r.wipes;
        wiped_accepted += r.wiped_accepted;
        merged += r.writes_merged;
        lin_ops += r.lin_ops;
        lin_explored += r.lin_explored;
        lin_unfinished += r.lin_unfinished;
        race_steps[r.race_step < 8 ? r.race_step : 7]++;
        if (r.violations > 0) {
            failed++;
            printf("seed %" PRIu64 " FAILED: %s\n", seed, r.first);
            printf("  replay: %s --seed %" PRIu64 "%s%s%s%s --trace\n",
                   argv[0], seed, nodes ? " --nodes " : "",
                   nodes ? (nodes == 3 ? "3" : nodes == 5 ? "5" : "7") : "",
                   wipes ? " --wipes" : "", lin_only ? " --lin-only" : "");
        }
        if (stop && failed > 0) {
            seeds = k + 1;
            break;
        }
        if (!one && (k + 1) % 250 == 0) {
            printf("  ... %" PRIu64 "/%" PRIu64 " seeds, %" PRIu64
                   " failed, %lds\n",
                   k + 1, seeds, failed, (long)(time(NULL) - start));
            fflush(stdout);
        }
    }
    printf("totals: %" PRIu64 " entries committed, %" PRIu64
           " reads checked, %" PRIu64 " faults, %" PRIu64
           " snapshots installed\n",
           commits, reads, faults_n, snaps);
    printf("requests: %" PRIu64 " writes acknowledged, %" PRIu64
           " read barriers checked, %" PRIu64 " timed out\n",
           acked, barriers, timeouts);
    printf("leases: %" PRIu64 " of the seeds ran with lease reads and "
           "drifting clocks; followers answered %" PRIu64 " reads from "
           "their read leases\n",
           leases, leased);
    printf("linearizability: %" PRIu64 " register operations checked "
           "(per seed, the whole history), %" PRIu64 " search states, %"
           PRIu64 " keys left unfinished\n",
           lin_ops, lin_explored, lin_unfinished);
    printf("race: %" PRIu64 " of the seeds staged the election race; %"
           PRIu64 " put a voter a term above the new leader, %" PRIu64
           " reached the pivot\n",
           seeds - race_steps[0], race_steps[4] + race_steps[5] +
           race_steps[6], race_steps[6]);
    printf("late batches: %" PRIu64 " writes took the queued batch in as "
           "they started\n", merged);
    if (wipes) {
        printf("wipes: %" PRIu64 " of the seeds wiped a disk; peers accepted "
               "a wiped member's new folder %" PRIu64 " times\n",
               wiped, wiped_accepted);
    }
    printf("simulation: %" PRIu64 " seeds, %" PRIu64 " steps, %" PRIu64
           " violations\n",
           seeds, steps, violations);
    return violations == 0 ? 0 : 1;
}
