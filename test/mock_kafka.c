/*-------------------------------------------------------------------------
 *
 * mock_kafka.c
 *	  Test helper: runs librdkafka's mock Kafka cluster for the relay tests
 *	  and the benchmarks.
 *
 *	  mock_kafka [--brokers N] [--topic NAME:PARTITIONS]... [--no-stdin]
 *
 * Starts a mock cluster of N brokers (default 1, broker ids 1..N) listening
 * on 127.0.0.1, creates the given topics (asking for replication factor 1),
 * and prints exactly one line
 *
 *	  BOOTSTRAP=<host:port>[,<host:port>...]
 *
 * to stdout.  Then it reads commands from stdin, one per line, and answers
 * each with one line, "ok" or "error <reason>":
 *
 *	  down <broker_id>				 disconnect a broker and refuse new connections
 *	  up <broker_id>				 let a downed broker accept connections again
 *	  rtt <broker_id> <ms>			 delay the broker's responses by ms (0: none)
 *	  create <topic> <partitions>	 create a topic
 *	  produce_errors <count> <error> fail the next count Produce requests
 *									 (any topic) with the error, named as
 *									 librdkafka names it without "ERR_"
 *									 (MSG_SIZE_TOO_LARGE, ...); count 0
 *									 (and no error): forget the errors
 *									 not used yet
 *	  endtxn_errors <count> <error>	 fail the next count EndTxn requests
 *									 (a transaction's commit or abort) with
 *									 the error; count 0 (and no error):
 *									 forget the errors not used yet
 *	  endtxn_delay <ms>				 answer the next EndTxn request each
 *									 broker gets after ms, with success
 *									 (the broker has done what it asked:
 *									 the client waits, or gives up, for
 *									 a request that took effect)
 *	  topic_error <topic> <error>	 answer metadata requests for the topic
 *									 with the error (NO_ERROR: none), e.g.
 *									 TOPIC_AUTHORIZATION_FAILED
 *	  txn_produce <topic> <commit|abort> <value>
 *									 produce one message (no key) with a
 *									 transactional producer of its own, in a
 *									 transaction it then commits or aborts
 *									 (to check what read_committed
 *									 consumers see)
 *	  quit							 exit
 *
 * End of input on stdin also makes it exit, so a test that dies does not
 * leave the helper behind.  With --no-stdin, stdin is ignored and the helper
 * runs until SIGTERM or SIGINT (for shell scripts that start it in the
 * background).  SIGTERM and SIGINT end it cleanly in either mode.
 *
 * Exit status: 0 after a clean shutdown, 1 if the cluster could not be set
 * up, 2 for a usage error.
 *
 * How the mock cluster behaves (librdkafka 2.0), which tests should know:
 *	- A downed broker closes its connections and refuses new ones, but
 *	  leadership does not move: partitions it leads cannot be produced to or
 *	  read until it is up again, and metadata still names it as the leader.
 *	  kcat gives up at once when all its brokers are down ("all broker
 *	  connections are down", exit status 1); otherwise messages for a downed
 *	  leader wait for message.timeout.ms and then fail.
 *	- A topic a client asks about that does not exist is created on the fly
 *	  with 4 partitions; create topics explicitly when the count matters.
 *	- The replication factor is not honoured: metadata lists up to three
 *	  brokers as replicas whatever was asked.
 *	- Topic names are not checked by the mock; this helper checks them as
 *	  a real broker would.
 *
 * The mock cluster runs in threads of its own; this program's main thread
 * only waits for commands or signals.  The rd_kafka_t handle passed to
 * rd_kafka_mock_cluster_new() is an idle producer that never connects to
 * anything: librdkafka needs it for its bookkeeping.
 *
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE				/* ppoll() */

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define MAX_BROKERS		64
#define MAX_PARTITIONS	10000
#define MAX_TOPIC_LEN	249		/* Kafka's own limit */
#define LINE_MAX_LEN	1024

static const char *progname = "mock_kafka";

/* Set by the signal handler; only read while SIGINT and SIGTERM are blocked. */
static volatile sig_atomic_t stop_requested = 0;

static rd_kafka_mock_cluster_t *cluster = NULL;
static int	broker_count = 1;

static void
usage(FILE *out)
{
	fprintf(out,
			"Usage: %s [--brokers N] [--topic NAME:PARTITIONS]... [--no-stdin]\n"
			"\n"
			"Runs a mock Kafka cluster on 127.0.0.1 and prints its bootstrap\n"
			"servers as one line \"BOOTSTRAP=...\".  Then reads commands from\n"
			"stdin, one per line, each answered with \"ok\" or \"error <reason>\":\n"
			"  down <broker_id>, up <broker_id>, rtt <broker_id> <ms>,\n"
			"  create <topic> <partitions>, produce_errors <count> <error>,\n"
			"  endtxn_errors <count> <error>, endtxn_delay <ms>,\n"
			"  topic_error <topic> <error>, txn_produce <topic> <commit|abort> <value>,\n"
			"  quit\n"
			"\n"
			"  --brokers N              number of brokers, ids 1..N (default 1)\n"
			"  --topic NAME:PARTITIONS  create a topic at start (repeatable)\n"
			"  --no-stdin               ignore stdin, run until SIGTERM or SIGINT\n",
			progname);
}

/* Reports a command-line error and exits with status 2. */
static void usage_error(const char *fmt,...) __attribute__((format(printf, 1, 2), noreturn));

static void
usage_error(const char *fmt,...)
{
	va_list		ap;

	fprintf(stderr, "%s: ", progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry \"%s --help\" for more information.\n", progname);
	exit(2);
}

/*
 * Parses a whole decimal integer in [min, max]; false if the text is
 * anything else (empty, trailing characters, out of range).
 */
static bool
parse_int(const char *s, int min, int max, int *result)
{
	char	   *end;
	long		val;

	if (s == NULL || *s == '\0')
		return false;
	errno = 0;
	val = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || val < min || val > max)
		return false;
	*result = (int) val;
	return true;
}

/*
 * Kafka's rule for topic names: 1 to 249 characters from [a-zA-Z0-9._-],
 * and not "." or "..".  The mock cluster accepts anything, a real broker
 * does not; checking here keeps tests honest.
 */
static bool
valid_topic_name(const char *name)
{
	size_t		len = strlen(name);

	if (len == 0 || len > MAX_TOPIC_LEN)
		return false;
	if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return false;
	return strspn(name,
				  "abcdefghijklmnopqrstuvwxyz"
				  "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				  "0123456789._-") == len;
}

/*
 * Creates a topic with replication factor 1.  Returns NULL on success, or a
 * static message describing the failure.
 */
static const char *
create_topic(const char *name, int partitions)
{
	rd_kafka_resp_err_t err;

	if (!valid_topic_name(name))
		return "invalid topic name";
	err = rd_kafka_mock_topic_create(cluster, name, partitions, 1);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		return rd_kafka_err2str(err);
	return NULL;
}

/*
 * Finds a broker error code by its name without the "ERR_" prefix
 * (MSG_SIZE_TOO_LARGE); false if there is none by that name.
 */
static bool
parse_error(const char *name, rd_kafka_resp_err_t *err)
{
	const struct rd_kafka_err_desc *descs;
	size_t		cnt;

	rd_kafka_get_err_descs(&descs, &cnt);
	for (size_t i = 0; i < cnt; i++)
	{
		if (descs[i].name != NULL && strcmp(descs[i].name, name) == 0)
		{
			*err = descs[i].code;
			return true;
		}
	}
	return false;
}

/*
 * Produces one message in a transaction of a new transactional producer
 * and commits or aborts it.  Returns NULL on success, or a message
 * (static, or in errbuf) describing the failure.
 */
static const char *
txn_produce(const char *topic, bool commit, const char *value,
			char *errbuf, size_t errlen)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_t *rk;
	rd_kafka_error_t *error;
	rd_kafka_resp_err_t err;
	const char *failed = NULL;

	if (!valid_topic_name(topic))
	{
		rd_kafka_conf_destroy(conf);
		return "invalid topic name";
	}
	if (rd_kafka_conf_set(conf, "bootstrap.servers",
						  rd_kafka_mock_cluster_bootstraps(cluster),
						  errbuf, errlen) != RD_KAFKA_CONF_OK ||
		rd_kafka_conf_set(conf, "transactional.id", "mock_kafka-txn_produce",
						  errbuf, errlen) != RD_KAFKA_CONF_OK ||
		rd_kafka_conf_set(conf, "log_level", "4",
						  errbuf, errlen) != RD_KAFKA_CONF_OK)
	{
		rd_kafka_conf_destroy(conf);
		return errbuf;
	}
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errbuf, errlen);
	if (rk == NULL)
	{
		rd_kafka_conf_destroy(conf);
		return errbuf;
	}
	error = rd_kafka_init_transactions(rk, 10000);
	if (error == NULL)
		error = rd_kafka_begin_transaction(rk);
	if (error == NULL)
	{
		err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
								RD_KAFKA_V_VALUE((void *) value, strlen(value)),
								RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
								RD_KAFKA_V_END);
		if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			snprintf(errbuf, errlen, "produce: %s", rd_kafka_err2str(err));
			failed = errbuf;
		}
		else if (commit)
			error = rd_kafka_commit_transaction(rk, 10000);
		else
		{
			/* delivered first, so that the aborted message is in the log */
			rd_kafka_flush(rk, 10000);
			error = rd_kafka_abort_transaction(rk, 10000);
		}
	}
	if (error != NULL)
	{
		snprintf(errbuf, errlen, "%s", rd_kafka_error_string(error));
		rd_kafka_error_destroy(error);
		failed = errbuf;
	}
	rd_kafka_destroy(rk);
	return failed;
}

static void
reply(const char *error)
{
	if (error == NULL)
		fputs("ok\n", stdout);
	else
		printf("error %s\n", error);
	fflush(stdout);
}

/*
 * "<cmd> <count> <error>": fail the next count requests of the API with the
 * error; "<cmd> 0": forget the errors of the API not used yet.
 */
static void
request_errors(const char *cmd, int16_t apikey, int nargs, char **args)
{
	int			count;
	rd_kafka_resp_err_t err;
	rd_kafka_resp_err_t errors[100];
	char		usage[128];

	if (nargs == 1 && strcmp(args[0], "0") == 0)
	{
		rd_kafka_mock_clear_request_errors(cluster, apikey);
		reply(NULL);
		return;
	}
	if (nargs != 2)
	{
		snprintf(usage, sizeof(usage), "usage: %s <count> <error> | %s 0", cmd, cmd);
		reply(usage);
		return;
	}
	if (!parse_int(args[0], 1, 100, &count))
	{
		reply("invalid count (1 to 100)");
		return;
	}
	if (!parse_error(args[1], &err))
	{
		reply("unknown error name");
		return;
	}
	for (int i = 0; i < count; i++)
		errors[i] = err;
	rd_kafka_mock_push_request_errors_array(cluster, apikey, count, errors);
	reply(NULL);
}

/*
 * Runs one command line and answers it.  Returns false when the helper
 * should exit.
 */
static bool
run_command(char *line)
{
	const char *sep = " \t\r";
	char	   *save = NULL;
	char	   *cmd;
	char	   *args[3];
	char		errbuf[512];
	int			nargs = 0;
	char	   *tok;

	cmd = strtok_r(line, sep, &save);
	if (cmd == NULL)
	{
		reply("empty command");
		return true;
	}
	while ((tok = strtok_r(NULL, sep, &save)) != NULL)
	{
		if (nargs == 3)
		{
			reply("too many arguments");
			return true;
		}
		args[nargs++] = tok;
	}

	if (strcmp(cmd, "quit") == 0)
	{
		if (nargs != 0)
		{
			reply("usage: quit");
			return true;
		}
		reply(NULL);
		return false;
	}
	else if (strcmp(cmd, "down") == 0 || strcmp(cmd, "up") == 0)
	{
		bool		down = (cmd[0] == 'd');
		int			broker_id;
		rd_kafka_resp_err_t err;

		if (nargs != 1)
		{
			reply(down ? "usage: down <broker_id>" : "usage: up <broker_id>");
			return true;
		}
		if (!parse_int(args[0], 1, broker_count, &broker_id))
		{
			reply("no such broker");
			return true;
		}
		if (down)
			err = rd_kafka_mock_broker_set_down(cluster, broker_id);
		else
			err = rd_kafka_mock_broker_set_up(cluster, broker_id);
		reply(err == RD_KAFKA_RESP_ERR_NO_ERROR ? NULL : rd_kafka_err2str(err));
	}
	else if (strcmp(cmd, "rtt") == 0)
	{
		int			broker_id;
		int			rtt_ms;
		rd_kafka_resp_err_t err;

		if (nargs != 2)
		{
			reply("usage: rtt <broker_id> <milliseconds>");
			return true;
		}
		if (!parse_int(args[0], 1, broker_count, &broker_id))
		{
			reply("no such broker");
			return true;
		}
		if (!parse_int(args[1], 0, 600000, &rtt_ms))
		{
			reply("invalid round-trip time");
			return true;
		}
		err = rd_kafka_mock_broker_set_rtt(cluster, broker_id, rtt_ms);
		reply(err == RD_KAFKA_RESP_ERR_NO_ERROR ? NULL : rd_kafka_err2str(err));
	}
	else if (strcmp(cmd, "create") == 0)
	{
		int			partitions;

		if (nargs != 2)
		{
			reply("usage: create <topic> <partitions>");
			return true;
		}
		if (!parse_int(args[1], 1, MAX_PARTITIONS, &partitions))
		{
			reply("invalid partition count");
			return true;
		}
		reply(create_topic(args[0], partitions));
	}
	else if (strcmp(cmd, "produce_errors") == 0)
		request_errors(cmd, 0 /* Produce */ , nargs, args);
	else if (strcmp(cmd, "endtxn_errors") == 0)
		request_errors(cmd, 26 /* EndTxn */ , nargs, args);
	else if (strcmp(cmd, "endtxn_delay") == 0)
	{
		int			delay_ms;
		rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;

		if (nargs != 1)
		{
			reply("usage: endtxn_delay <milliseconds>");
			return true;
		}
		if (!parse_int(args[0], 1, 600000, &delay_ms))
		{
			reply("invalid delay");
			return true;
		}
		for (int b = 1; b <= broker_count && err == RD_KAFKA_RESP_ERR_NO_ERROR; b++)
			err = rd_kafka_mock_broker_push_request_error_rtts(cluster, b, 26 /* EndTxn */ , 1,
															   RD_KAFKA_RESP_ERR_NO_ERROR, delay_ms);
		reply(err == RD_KAFKA_RESP_ERR_NO_ERROR ? NULL : rd_kafka_err2str(err));
	}
	else if (strcmp(cmd, "topic_error") == 0)
	{
		rd_kafka_resp_err_t err;

		if (nargs != 2)
		{
			reply("usage: topic_error <topic> <error>");
			return true;
		}
		if (!valid_topic_name(args[0]))
		{
			reply("invalid topic name");
			return true;
		}
		if (!parse_error(args[1], &err))
		{
			reply("unknown error name");
			return true;
		}
		rd_kafka_mock_topic_set_error(cluster, args[0], err);
		reply(NULL);
	}
	else if (strcmp(cmd, "txn_produce") == 0)
	{
		if (nargs != 3 ||
			(strcmp(args[1], "commit") != 0 && strcmp(args[1], "abort") != 0))
		{
			reply("usage: txn_produce <topic> <commit|abort> <value>");
			return true;
		}
		reply(txn_produce(args[0], strcmp(args[1], "commit") == 0, args[2],
						  errbuf, sizeof(errbuf)));
	}
	else
		reply("unknown command");

	return true;
}

/*
 * Serves commands from stdin until "quit", end of input or a signal.
 *
 * Input is read with read(2) rather than stdio so that ppoll() sees every
 * byte not yet consumed; ppoll() atomically unblocks SIGINT and SIGTERM
 * while it waits, so a signal cannot slip in between the check of
 * stop_requested and the wait.
 */
static void
serve_stdin(const sigset_t *waitmask)
{
	char		buf[LINE_MAX_LEN + 1];
	size_t		len = 0;
	bool		discarding = false; /* inside an overlong line */

	for (;;)
	{
		struct pollfd pfd = {.fd = STDIN_FILENO,.events = POLLIN};
		ssize_t		n;
		char	   *nl;

		if (stop_requested)
			return;
		if (ppoll(&pfd, 1, NULL, waitmask) < 0)
		{
			if (errno == EINTR)
				continue;
			perror("ppoll");
			return;
		}

		n = read(STDIN_FILENO, buf + len, LINE_MAX_LEN - len);
		if (n < 0)
		{
			if (errno == EINTR || errno == EAGAIN)
				continue;
			perror("read");
			return;
		}
		if (n == 0)
		{
			/* End of input: a last line without a newline still counts. */
			if (len > 0 && !discarding)
			{
				buf[len] = '\0';
				run_command(buf);
			}
			return;
		}
		len += n;

		/* Run every complete line in the buffer. */
		while ((nl = memchr(buf, '\n', len)) != NULL)
		{
			size_t		linelen = nl - buf;
			bool		go_on = true;

			*nl = '\0';
			if (discarding)
				discarding = false;
			else
				go_on = run_command(buf);
			memmove(buf, nl + 1, len - linelen - 1);
			len -= linelen + 1;
			if (!go_on)
				return;
		}

		/* A full buffer without a newline: reject the line, skip its rest. */
		if (len == LINE_MAX_LEN)
		{
			if (!discarding)
				reply("line too long");
			discarding = true;
			len = 0;
		}
	}
}

/* Waits for SIGTERM or SIGINT. */
static void
wait_for_signal(const sigset_t *waitmask)
{
	while (!stop_requested)
	{
		if (ppoll(NULL, 0, NULL, waitmask) < 0 && errno != EINTR)
		{
			perror("ppoll");
			return;
		}
	}
}

static void
handle_stop_signal(int signo)
{
	(void) signo;
	stop_requested = 1;
}

int
main(int argc, char **argv)
{
	bool		use_stdin = true;
	char	  **topic_names;
	int		   *topic_partitions;
	int			ntopics = 0;
	rd_kafka_conf_t *conf;
	rd_kafka_t *rk;
	char		errstr[512];
	sigset_t	stopmask;
	sigset_t	waitmask;
	struct sigaction sa;
	int			status = 0;

	/* Command line: all of it is checked before anything starts. */
	topic_names = calloc(argc, sizeof(char *));
	topic_partitions = calloc(argc, sizeof(int));
	if (topic_names == NULL || topic_partitions == NULL)
	{
		perror("calloc");
		return 1;
	}
	for (int i = 1; i < argc; i++)
	{
		const char *arg = argv[i];

		if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0)
		{
			usage(stdout);
			return 0;
		}
		else if (strcmp(arg, "--no-stdin") == 0)
			use_stdin = false;
		else if (strcmp(arg, "--brokers") == 0 || strcmp(arg, "--topic") == 0)
		{
			if (i + 1 >= argc)
				usage_error("option %s needs a value", arg);
			if (arg[2] == 'b')
			{
				if (!parse_int(argv[++i], 1, MAX_BROKERS, &broker_count))
					usage_error("invalid broker count \"%s\" (1 to %d "
								"expected)", argv[i], MAX_BROKERS);
			}
			else
			{
				/* NAME:PARTITIONS; topic names cannot contain a colon. */
				char	   *spec = argv[++i];
				char	   *colon = strrchr(spec, ':');

				if (colon == NULL)
					usage_error("invalid topic \"%s\" (NAME:PARTITIONS "
								"expected)", spec);
				if (!parse_int(colon + 1, 1, MAX_PARTITIONS,
							   &topic_partitions[ntopics]))
					usage_error("invalid partition count in \"%s\"", spec);
				*colon = '\0';
				if (!valid_topic_name(spec))
					usage_error("invalid topic name \"%s\"", spec);
				topic_names[ntopics++] = spec;
			}
		}
		else
			usage_error("unrecognized argument \"%s\"", arg);
	}

	/*
	 * Block SIGINT and SIGTERM before librdkafka starts its threads, so that
	 * they are only ever delivered to the main thread inside ppoll().
	 */
	sigemptyset(&stopmask);
	sigaddset(&stopmask, SIGINT);
	sigaddset(&stopmask, SIGTERM);
	sigprocmask(SIG_BLOCK, &stopmask, &waitmask);
	sigdelset(&waitmask, SIGINT);
	sigdelset(&waitmask, SIGTERM);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handle_stop_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	/* The handle the mock cluster hangs off; it never talks to a broker. */
	conf = rd_kafka_conf_new();

	/*
	 * Warnings and errors only: at the default level the idle handle logs a
	 * notice that it has no bootstrap servers, which only misleads readers
	 * of a test log.
	 */
	if (rd_kafka_conf_set(conf, "log_level", "4", errstr,
						  sizeof(errstr)) != RD_KAFKA_CONF_OK)
	{
		fprintf(stderr, "%s: %s\n", progname, errstr);
		rd_kafka_conf_destroy(conf);
		return 1;
	}
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (rk == NULL)
	{
		fprintf(stderr, "%s: could not create Kafka handle: %s\n",
				progname, errstr);
		rd_kafka_conf_destroy(conf);
		return 1;
	}

	cluster = rd_kafka_mock_cluster_new(rk, broker_count);
	if (cluster == NULL)
	{
		fprintf(stderr, "%s: could not create mock cluster\n", progname);
		rd_kafka_destroy(rk);
		return 1;
	}

	for (int i = 0; i < ntopics; i++)
	{
		const char *error = create_topic(topic_names[i], topic_partitions[i]);

		if (error != NULL)
		{
			fprintf(stderr, "%s: could not create topic \"%s\": %s\n",
					progname, topic_names[i], error);
			status = 1;
			break;
		}
	}

	if (status == 0)
	{
		printf("BOOTSTRAP=%s\n", rd_kafka_mock_cluster_bootstraps(cluster));
		fflush(stdout);

		if (use_stdin)
			serve_stdin(&waitmask);
		else
			wait_for_signal(&waitmask);
	}

	rd_kafka_mock_cluster_destroy(cluster);
	rd_kafka_destroy(rk);
	free(topic_names);
	free(topic_partitions);
	return status;
}
