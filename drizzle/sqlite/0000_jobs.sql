CREATE TABLE `jobs` (
	`seq` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`id` text NOT NULL,
	`status` text NOT NULL,
	`priority` integer DEFAULT 0 NOT NULL,
	`idempotency_key` text,
	`language` text,
	`task` text NOT NULL,
	`timestamps` integer NOT NULL,
	`filename` text NOT NULL,
	`bytes` integer NOT NULL,
	`duration_seconds` real NOT NULL,
	`blob_key` text NOT NULL,
	`attempts` integer DEFAULT 0 NOT NULL,
	`max_attempts` integer NOT NULL,
	`progress` real DEFAULT 0 NOT NULL,
	`run_after` integer NOT NULL,
	`lease_token` integer DEFAULT 0 NOT NULL,
	`lease_expires_at` integer,
	`worker_id` text,
	`result` text,
	`error_code` text,
	`error_message` text,
	`created_at` integer NOT NULL,
	`started_at` integer,
	`finished_at` integer,
	`updated_at` integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `jobs_id_unique` ON `jobs` (`id`);--> statement-breakpoint
CREATE UNIQUE INDEX `jobs_idempotency_key_unique` ON `jobs` (`idempotency_key`);--> statement-breakpoint
CREATE INDEX `jobs_claim_order` ON `jobs` (`status`,`priority`,`seq`);--> statement-breakpoint
CREATE INDEX `jobs_lease_expiry` ON `jobs` (`status`,`lease_expires_at`);