CREATE TABLE "job_counts" (
	"status" text NOT NULL,
	"shard" integer NOT NULL,
	"n" bigint NOT NULL,
	CONSTRAINT "job_counts_status_shard_pk" PRIMARY KEY("status","shard")
);
--> statement-breakpoint
-- Written by hand (drizzle-kit does not generate triggers): job_counts follows every job that enters or leaves a finished status,
-- each change on a random one of 16 shards so concurrent completions do not wait on one row.
INSERT INTO "job_counts" ("status", "shard", "n") SELECT "status", 0, count(*) FROM "jobs" WHERE "status" IN ('DONE', 'FAILED', 'CANCELLED') GROUP BY "status";
--> statement-breakpoint
CREATE FUNCTION "murmur_count_jobs"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.status IN ('DONE', 'FAILED', 'CANCELLED') AND (TG_OP = 'DELETE' OR OLD.status IS DISTINCT FROM NEW.status) THEN
    INSERT INTO job_counts (status, shard, n) VALUES (OLD.status, floor(random() * 16)::int, -1)
      ON CONFLICT (status, shard) DO UPDATE SET n = job_counts.n - 1;
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.status IN ('DONE', 'FAILED', 'CANCELLED') AND (TG_OP = 'INSERT' OR OLD.status IS DISTINCT FROM NEW.status) THEN
    INSERT INTO job_counts (status, shard, n) VALUES (NEW.status, floor(random() * 16)::int, 1)
      ON CONFLICT (status, shard) DO UPDATE SET n = job_counts.n + 1;
  END IF;
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE TRIGGER "jobs_count" AFTER INSERT OR UPDATE OF "status" OR DELETE ON "jobs" FOR EACH ROW EXECUTE FUNCTION "murmur_count_jobs"();
