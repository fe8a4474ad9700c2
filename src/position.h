/*-------------------------------------------------------------------------
 *
 * position.h
 *	  Position assignment and the safe read horizon.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EB_POSITION_H
#define EB_POSITION_H

#include "access/sdir.h"
#include "datatype/timestamp.h"
#include "utils/rel.h"

#include "catalog.h"

extern EbTopicShared *eb_topic_state(EbTopic *topic);
extern EbPartShared *eb_part_state(EbTopic *topic, int32 partition);
extern Relation eb_assign_positions(EbTopic *topic, int32 partition, int n,
									int64 *first);
extern void eb_require_primary(void);
extern int64 eb_end_position(EbTopic *topic, int32 partition);
extern int64 eb_read_horizon(EbTopic *topic, int32 partition, int64 *end_position);
extern void eb_segment_resolve_indexes(EbSegment *seg, Relation rel);
extern int64 eb_first_position(EbTopic *topic, int32 partition);
extern int64 eb_position_at_time(EbTopic *topic, int32 partition, TimestampTz ts);
extern int64 eb_segment_edge_position(Relation rel, Oid pk_index, int32 partition,
									  ScanDirection dir);

#endif							/* EB_POSITION_H */
