/*
 * init.c — module load: PG_MODULE_MAGIC, settings, the error hints and (when
 * preloaded) the root key.  Runs once per process that loads the library;
 * the root key is read only in the postmaster, during
 * shared_preload_libraries.
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"

#include "crypto.h"
#include "hints.h"
#include "settings.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	toss_define_settings();
	toss_install_hints();
	if (process_shared_preload_libraries_in_progress)
		toss_load_root_key();
}
