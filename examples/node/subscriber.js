// A pg_eventbus subscriber in Node.js (npm package "pg").
//
// LISTEN "eventbus.<topic>" wakes it after a transaction that published to
// the topic commits; it then polls the consumer group until nothing is
// left.  Notifications that arrive while it drains only schedule one more
// drain, so a burst of commits costs a few polls, not one per commit.
//
//   npm install pg
//   node subscriber.js "postgres://localhost/app" billing orders
//   node subscriber.js "" billing orders        (connection from PG* variables)
//
// For the tests, EXIT_AFTER_MS makes it stop after that long without events.

const { Client } = require('pg');

async function main() {
  const [connectionString, group, topic] = process.argv.slice(2);
  const batch = 100;
  // an empty connection string means: use PGHOST, PGPORT, PGDATABASE, PGUSER
  const client = new Client(connectionString ? { connectionString } : {});
  await client.connect();

  let draining = false;
  let again = false;
  let lastEvent = Date.now();

  async function drain() {
    if (draining) { again = true; return; }
    draining = true;
    do {
      again = false;
      for (;;) {
        const { rows } = await client.query(
          'SELECT partition, position, key, value FROM eventbus.poll($1, $2, $3, commit => true)',
          [group, topic, batch]);
        for (const r of rows) {
          console.log(JSON.stringify(r));
        }
        if (rows.length > 0) lastEvent = Date.now();
        if (rows.length < batch) break;
      }
    } while (again);
    draining = false;
  }

  client.on('notification', () => { drain().catch(fail); });
  await client.query(`LISTEN "eventbus.${topic}"`);
  await drain();            // events committed before LISTEN

  const exitAfter = Number(process.env.EXIT_AFTER_MS || 0);
  if (exitAfter > 0) {
    const timer = setInterval(async () => {
      if (!draining && Date.now() - lastEvent > exitAfter) {
        clearInterval(timer);
        await client.end();
      }
    }, 200);
  }
}

function fail(err) {
  console.error(err);
  process.exit(1);
}

main().catch(fail);
