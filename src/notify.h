/*-------------------------------------------------------------------------
 *
 * notify.h
 *	  Wake-ups: coalesced NOTIFY from the database worker, and wait().
 *
 *-------------------------------------------------------------------------
 */
#ifndef EB_NOTIFY_H
#define EB_NOTIFY_H

#include "catalog.h"

extern int	eb_notify_interval;

extern void eb_notify_record(EbTopic *topic);
extern void eb_notify_xact_end(bool wake);
extern void eb_notify_database(Oid dboid, bool wake_worker);
extern void eb_notify_register(bool active);
extern void eb_notify_listen(const char *channel);
extern long eb_notify_pass(void);

#endif							/* EB_NOTIFY_H */
