/*-------------------------------------------------------------------------
 *
 * settings.c
 *	  The values of the server-wide settings every module reads
 *	  (eventbus.database, the shared memory sizes, max_event_size,
 *	  maintenance_naptime), with their defaults; settings.h declares them
 *	  with what else every module shares.  _PG_init (pg_eventbus.c) defines
 *	  the settings on them; a module's own settings live in that module.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "settings.h"

char	   *eb_database = NULL;
int			eb_max_topics = 1024;
int			eb_max_partitions = 16384;
int			eb_max_databases = 32;
int			eb_max_topics_per_database = -1;
int			eb_max_partitions_per_database = -1;
int			eb_max_event_size = 999424;
int			eb_maintenance_naptime = 10000;
