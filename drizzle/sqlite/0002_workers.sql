CREATE TABLE `workers` (
	`id` text PRIMARY KEY NOT NULL,
	`pool` text NOT NULL,
	`provider` text,
	`host` text,
	`last_seen_at` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `jobs_blob_key` ON `jobs` (`blob_key`);