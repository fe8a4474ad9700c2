/*-------------------------------------------------------------------------
 *
 * topic.h
 *	  Creating topics from other modules.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EB_TOPIC_H
#define EB_TOPIC_H

#include "datatype/timestamp.h"

#include "catalog.h"

extern void eb_check_topic_owner(EbTopic *topic);
extern void eb_check_topic_visible(EbTopic *topic);
extern void eb_topic_create(const char *name, int32 partitions, Interval *retention);
extern EbTopic *eb_topic_ensure_dead_letter(const char *name, EbTopic *source, Oid owner);

#endif							/* EB_TOPIC_H */
