CREATE TABLE `api_keys` (
	`id` text PRIMARY KEY NOT NULL,
	`name` text NOT NULL,
	`tenant` text NOT NULL,
	`role` text NOT NULL,
	`hash` text NOT NULL,
	`prefix` text NOT NULL,
	`created_at` integer NOT NULL,
	`revoked_at` integer,
	`last_used_at` integer
);
--> statement-breakpoint
CREATE UNIQUE INDEX `api_keys_name_unique` ON `api_keys` (`name`);--> statement-breakpoint
CREATE UNIQUE INDEX `api_keys_hash_unique` ON `api_keys` (`hash`);--> statement-breakpoint
DROP INDEX `jobs_idempotency_key_unique`;--> statement-breakpoint
ALTER TABLE `jobs` ADD `tenant` text DEFAULT 'default' NOT NULL;--> statement-breakpoint
ALTER TABLE `jobs` ADD `api_key_id` text;--> statement-breakpoint
CREATE UNIQUE INDEX `jobs_tenant_idempotency_key` ON `jobs` (`tenant`,`idempotency_key`);--> statement-breakpoint
CREATE INDEX `jobs_tenant_seq` ON `jobs` (`tenant`,`seq`);--> statement-breakpoint
CREATE INDEX `jobs_key_created` ON `jobs` (`api_key_id`,`created_at`);