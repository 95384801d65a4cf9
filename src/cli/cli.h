/* cli.h — subcommands of the mlxn program and small shared helpers. */
#ifndef MLXN_CLI_H
#define MLXN_CLI_H

#include "mlxn.h"
#include <stdbool.h>
#include <stdio.h>

int cmd_graph(int argc, char **argv);
int cmd_bench_ops(int argc, char **argv);
int cmd_convert(int argc, char **argv);
/* Progress line for model loading on a terminal (stderr), for
 * mlxn_model_load_ex. */
void cli_load_progress(void *ctx, int layers_done, int layers);
int cmd_generate(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_bench(int argc, char **argv);
/* Peak resident set size of the process in MiB. */
double cli_peak_rss_mib(void);

/* Open the device named by --backend (cpu, cuda, auto). When "auto" lands
 * on the CPU in a CUDA build, says so in one line on stderr. */
mlxn_status cli_open_device(mlxn_device **out, const char *name, int threads);

/* Print "mlxn: <what>: <status>: <message>" to stderr and return 1. */
int cli_fail(const char *what, mlxn_status st);
/* Parse an integer/float flag value; on error print and return false. */
bool cli_int(const char *flag, const char *v, long lo, long hi, long *out);
bool cli_float(const char *flag, const char *v, double *out);
/* qsort comparator for doubles, ascending (medians of timings). */
int cli_cmp_double(const void *a, const void *b);

#endif
