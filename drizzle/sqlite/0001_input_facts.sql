ALTER TABLE `jobs` ADD `format` text DEFAULT 'wav' NOT NULL;--> statement-breakpoint
ALTER TABLE `jobs` ADD `sample_rate` integer DEFAULT 16000 NOT NULL;--> statement-breakpoint
ALTER TABLE `jobs` ADD `channels` integer DEFAULT 1 NOT NULL;