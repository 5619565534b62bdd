"""The local runtime: settings, connections (Postgres, Kafka), database bootstrap and migrations, the
embedded services supervisor and the environment command. Every other package stands on it; it imports
none of them."""
