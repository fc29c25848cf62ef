/*
 * init.c — module load: PG_MODULE_MAGIC, settings, and (when preloaded) the
 * root key.  Runs once per process that loads the library; the root key is
 * read only in the postmaster, during shared_preload_libraries.
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"

#include "crypto.h"
#include "settings.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	toss_define_settings();
	if (process_shared_preload_libraries_in_progress)
		toss_load_root_key();
}
