/*
 * backend.h — the table of functions a backend provides. The CPU backend is
 * complete and is the reference; the CUDA backend maps the same calls onto
 * device memory, kernels and CUDA graphs. A Metal backend would map one to
 * one: an execute call is a command buffer, a group boundary a memory barrier.
 */
#ifndef MLXN_BACKEND_H
#define MLXN_BACKEND_H

#include "core/object.h"

struct mlxn_exec;
struct mlxn_node;

typedef struct mlxn_backend {
    const char *name;
    mlxn_status (*init)(mlxn_device *dev, const mlxn_device_options *opts);
    void (*shutdown)(mlxn_device *dev);
    mlxn_status (*alloc)(mlxn_device *dev, size_t size, void **out);
    void (*free)(mlxn_device *dev, void *ptr);
    /* Host <-> device copies (plain memcpy on the CPU). */
    mlxn_status (*upload)(mlxn_device *dev, void *dst, const void *src, size_t n);
    mlxn_status (*download)(mlxn_device *dev, void *dst, const void *src, size_t n);
    /* Queued copies of a few bytes (n <= MLXN_QCOPY_MAX), ordered after the
     * work already submitted and returning without waiting for it (NULL:
     * the core uses upload / download, which wait). upload_queued: src may
     * be reused on return. read_queued: the bytes at src (device memory)
     * go to a slot, whose number it returns; read_wait waits for them and
     * copies them to dst, freeing the slot. */
    mlxn_status (*upload_queued)(mlxn_device *dev, void *dst, const void *src, size_t n);
    mlxn_status (*read_queued)(mlxn_device *dev, const void *src, size_t n, int *slot);
    mlxn_status (*read_wait)(mlxn_device *dev, int slot, void *dst, size_t n);
    /* Write elements [0, n) of a random fill at dst (device memory, aligned
     * to the element size); returns when they are written. Both backends
     * write exactly mlxn_fill_host's bytes. */
    mlxn_status (*fill)(mlxn_device *dev, void *dst, const mlxn_fill *f, size_t n);
    /* True when host memory can be used in place (adopt without a copy). */
    bool host_memory;
    /* NULL when every op is supported; else says whether one node runs here. */
    bool (*supports)(mlxn_device *dev, const struct mlxn_node *node);
    /* Run a scheduled graph (ex->order, ex->groups, ex->deps). May return
     * before the work is done; `wait` blocks until it is. `replay` is true
     * when the same exec ran before unchanged (backends may reuse an
     * instantiated graph). */
    mlxn_status (*execute)(mlxn_device *dev, struct mlxn_exec *ex, bool replay);
    mlxn_status (*wait)(mlxn_device *dev, struct mlxn_exec *ex);
    /* Drop whatever the backend cached on ex (an instantiated CUDA graph). */
    void (*exec_release)(mlxn_device *dev, struct mlxn_exec *ex);
    /* Device memory the driver says was taken since init (NULL: unknown;
     * mlxn_device_memory_driver). */
    size_t (*mem_taken)(mlxn_device *dev);
} mlxn_backend;

extern const mlxn_backend mlxn_backend_cpu;
#ifdef MLXN_CUDA
extern const mlxn_backend mlxn_backend_cuda;
/* True when a CUDA device is present and usable (no error recorded). */
bool mlxn_cuda_available(void);
#endif

#endif
