/*-------------------------------------------------------------------------
 *
 * segment.h
 *	  Segment tables: creation, rotation and retention.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EB_SEGMENT_H
#define EB_SEGMENT_H

#include "catalog.h"

/* Receives one line of maintenance output. */
typedef void (*EbMaintReport) (void *arg, const char *topic, const char *action,
							   int32 segment, const char *detail);

extern void eb_segment_create(int32 topic_id, const char *topic, int32 seg_no,
							  bool activated, int32 partitions);
extern void eb_maintain_topic(const char *topic, EbMaintReport report, void *arg);
extern List *eb_topic_names(void);

#endif							/* EB_SEGMENT_H */
