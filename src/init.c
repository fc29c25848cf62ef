/*
 * init.c — module load: PG_MODULE_MAGIC, settings, the error hints and (when
 * preloaded) the root key and the shared memory of the engine and the call
 * statistics.  Runs once per process that loads the library; the root key is
 * read only in the postmaster, during shared_preload_libraries.
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"

#include "crypto.h"
#include "engine.h"
#include "hints.h"
#include "settings.h"
#include "stats.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
toss_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(add_size(toss_stats_shmem_size(), toss_engine_shmem_size()));
	toss_engine_shmem_request();
}

static void
toss_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	toss_stats_shmem_init();
	toss_engine_shmem_init();
	LWLockRelease(AddinShmemInitLock);
}

void
_PG_init(void)
{
	toss_define_settings();
	toss_install_hints();
	if (process_shared_preload_libraries_in_progress)
	{
		toss_load_root_key();
		prev_shmem_request_hook = shmem_request_hook;
		shmem_request_hook = toss_shmem_request;
		prev_shmem_startup_hook = shmem_startup_hook;
		shmem_startup_hook = toss_shmem_startup;
	}
}
