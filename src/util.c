/*-------------------------------------------------------------------------
 *
 * util.c
 *	  Name validation, Kafka's default key partitioner, time-ordered UUIDs
 *	  and argument checks shared by the SQL functions.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "common/pg_prng.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "settings.h"
#include "compat.h"
#include "util.h"

/*
 * Topic and group names: 1 to EB_TOPIC_NAME_MAX characters from Kafka's
 * legal set [A-Za-z0-9._-], and neither "." nor "..".  Names are later used
 * as identifiers and channel names only through quoting, but refusing
 * everything else up front keeps errors early and names portable to Kafka.
 */
void
eb_validate_name(const char *kind, const char *name)
{
	size_t		len = strlen(name);
	size_t		i;
	bool		ok = len >= 1 && len <= EB_TOPIC_NAME_MAX;

	for (i = 0; ok && i < len; i++)
	{
		char		c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
			ok = false;
	}
	if (ok && (strcmp(name, ".") == 0 || strcmp(name, "..") == 0))
		ok = false;
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("invalid %s name \"%s\"", kind, name),
				 errdetail("A %s name has 1 to %d characters, each a letter A-Z or a-z, a digit, '.', '_' or '-', and is neither \".\" nor \"..\".",
						   kind, EB_TOPIC_NAME_MAX)));
}

/*
 * Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2), so that a
 * key maps to the same partition number here and in Kafka.
 */
int32
eb_murmur2(const char *data, int len)
{
	const uint32 seed = 0x9747b28c;
	const uint32 m = 0x5bd1e995;
	const int	r = 24;
	uint32		h = seed ^ (uint32) len;
	int			nblocks = len / 4;
	int			i;
	const unsigned char *d = (const unsigned char *) data;
	int			tail = len & ~3;

	for (i = 0; i < nblocks; i++)
	{
		uint32		k = (uint32) d[i * 4] |
			((uint32) d[i * 4 + 1] << 8) |
			((uint32) d[i * 4 + 2] << 16) |
			((uint32) d[i * 4 + 3] << 24);

		k *= m;
		k ^= k >> r;
		k *= m;
		h *= m;
		h ^= k;
	}

	switch (len % 4)
	{
		case 3:
			h ^= (uint32) d[tail + 2] << 16;
			pg_fallthrough;
		case 2:
			h ^= (uint32) d[tail + 1] << 8;
			pg_fallthrough;
		case 1:
			h ^= (uint32) d[tail];
			h *= m;
	}

	h ^= h >> 13;
	h *= m;
	h ^= h >> 15;
	return (int32) h;
}

/* Kafka's default partitioner: positive murmur2 of the UTF-8 key bytes. */
int32
eb_key_partition(text *key, int32 partitions)
{
	const char *bytes = VARDATA_ANY(key);
	int			len = VARSIZE_ANY_EXHDR(key);
	int32		h;

	if (GetDatabaseEncoding() != PG_UTF8)
	{
		char	   *converted = pg_server_to_any(bytes, len, PG_UTF8);

		if (converted != bytes)
		{
			bytes = converted;
			len = strlen(converted);
		}
	}
	h = eb_murmur2(bytes, len);
	return (int32) (((uint32) h & 0x7fffffff) % (uint32) partitions);
}

/*
 * A version 7 UUID: 48 bits of Unix time in milliseconds, then a 12-bit
 * counter that keeps ids from one backend increasing within a millisecond,
 * then random bits.
 */
void
eb_uuid_v7(pg_uuid_t *uuid)
{
	static int64 last_ms = 0;
	static uint32 seq = 0;
	int64		ms;
	uint64		rnd;
	int			i;

	ms = GetCurrentTimestamp() / 1000 +
		(int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * 1000;
	if (ms <= last_ms)
	{
		ms = last_ms;
		if (++seq > 0xFFF)
		{
			ms = ++last_ms;
			seq = pg_prng_uint32(&pg_global_prng_state) & 0x3FF;
		}
	}
	else
	{
		last_ms = ms;
		seq = pg_prng_uint32(&pg_global_prng_state) & 0x3FF;
	}

	for (i = 0; i < 6; i++)
		uuid->data[i] = (unsigned char) (ms >> (40 - 8 * i));
	uuid->data[6] = 0x70 | ((seq >> 8) & 0x0F);
	uuid->data[7] = seq & 0xFF;
	rnd = pg_prng_uint64(&pg_global_prng_state);
	for (i = 8; i < 16; i++)
	{
		uuid->data[i] = (unsigned char) rnd;
		rnd >>= 8;
	}
	uuid->data[8] = 0x80 | (uuid->data[8] & 0x3F);
}

void
eb_arg_not_null(FunctionCallInfo fcinfo, int argno, const char *what)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", what)));
}

/* A non-null, valid topic or group name argument. */
char *
eb_arg_name(FunctionCallInfo fcinfo, int argno, const char *what)
{
	char	   *name;

	eb_arg_not_null(fcinfo, argno, what);
	name = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	eb_validate_name(what, name);
	return name;
}

void
eb_check_writable(const char *cmdname)
{
	PreventCommandIfReadOnly(cmdname);
	PreventCommandIfParallelMode(cmdname);
	PreventCommandDuringRecovery(cmdname);
}

/* -1, 0 or 1 as the interval is negative, zero or positive. */
int
eb_interval_sign(Interval *iv)
{
	Interval	zero;

	memset(&zero, 0, sizeof(zero));
	return DatumGetInt32(DirectFunctionCall2(interval_cmp, IntervalPGetDatum(iv),
											 IntervalPGetDatum(&zero)));
}

/*
 * Runs fn(arg) in an internal subtransaction.  Returns NULL when it
 * succeeded; otherwise the subtransaction is rolled back and the error it
 * raised is returned, copied into the caller's memory context.
 */
ErrorData *
eb_run_in_subxact(void (*fn) (void *arg), void *arg)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	ErrorData  *volatile edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcontext);
	CurrentResourceOwner = oldowner;
	return edata;
}
