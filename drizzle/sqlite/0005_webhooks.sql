CREATE TABLE `settings` (
	`name` text PRIMARY KEY NOT NULL,
	`value` text NOT NULL
);
--> statement-breakpoint
ALTER TABLE `jobs` ADD `webhook_url` text;--> statement-breakpoint
ALTER TABLE `jobs` ADD `webhook_attempts` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE `jobs` ADD `webhook_status` integer;--> statement-breakpoint
ALTER TABLE `jobs` ADD `webhook_delivered_at` integer;--> statement-breakpoint
ALTER TABLE `jobs` ADD `webhook_next_at` integer;--> statement-breakpoint
CREATE INDEX `jobs_webhook_due` ON `jobs` (`webhook_next_at`);