/*-------------------------------------------------------------------------
 *
 * worker.h
 *	  Background workers: the launcher (launcher.c) and the database
 *	  worker of each database it serves (worker.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef EB_WORKER_H
#define EB_WORKER_H

#include "utils/guc.h"

extern void eb_worker_register(void);

/* launcher.c */
extern bool eb_database_check_hook(char **newval, void **extra, GucSource source);
extern bool eb_database_served(const char *dbname);
extern void eb_release_database(Oid dboid);
extern void eb_release_database_end(Oid dboid);
extern void eb_extension_changed(void);

#endif							/* EB_WORKER_H */
