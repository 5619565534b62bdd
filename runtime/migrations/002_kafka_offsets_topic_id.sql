-- The broker's topic id beside each stored offset: a topic deleted and created again (or a broker that
-- keeps its log in memory and restarted) gets a new id, and the old offsets must not be applied to it.
alter table raw.kafka_offsets add column if not exists topic_id text;
