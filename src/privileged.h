/*-------------------------------------------------------------------------
 *
 * privileged.h
 *	  The only way pg_eventbus runs anything with the extension owner's
 *	  rights: checked internal statements on the extension's own tables, and
 *	  a few named changes to the tables of topics.  See privileged.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EB_PRIVILEGED_H
#define EB_PRIVILEGED_H

#include "executor/spi.h"

/* Running internal SQL with a pinned search_path, optionally as owner. */
typedef struct EbSpi
{
	Oid			save_userid;	/* the caller */
	int			save_sec_context;
	int			save_nestlevel;
	bool		as_owner;
} EbSpi;

extern void eb_spi_begin(EbSpi *s, bool as_owner);
extern void eb_spi_end(EbSpi *s);
extern int	eb_spi_exec(const char *sql, int nargs, Oid *argtypes, Datum *values,
						const char *nulls, bool read_only);

extern SPIPlanPtr eb_spi_plan(SPIPlanPtr *cache, const char *sql, int nargs,
							  Oid *argtypes);
extern int	eb_spi_run(SPIPlanPtr plan, Datum *values, const char *nulls,
					   bool read_only);

/* Tables of topics, created and dropped as the extension owner. */
extern Oid	eb_priv_create_topic_tables(const char *topic, Oid owner);
extern Oid	eb_priv_create_segment(const char *topic, int32 seg_no);
extern void eb_priv_drop_segment(const char *topic, int32 seg_no, Oid relid,
								 Oid parent);
extern void eb_priv_drop_topic_tables(const char *topic, Oid relid, bool cascade);

#endif							/* EB_PRIVILEGED_H */
