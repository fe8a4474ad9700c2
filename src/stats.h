/*-------------------------------------------------------------------------
 *
 * stats.h
 *	  Monotonic per-topic counters for monitoring (see stats.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef EB_STATS_H
#define EB_STATS_H

#include "catalog.h"

typedef enum EbStatKind
{
	EB_STAT_PUBLISHED,
	EB_STAT_CONSUMED,
	EB_STAT_DEAD_LETTERED,
	EB_STAT_NKINDS
} EbStatKind;

extern void eb_stats_count(EbTopic *topic, EbStatKind kind, int64 n);
extern void eb_stats_xact_end(bool commit);
extern void eb_stats_subxact_end(int nestlevel, bool commit);

#endif							/* EB_STATS_H */
